"""Examples to copy: Lambda handlers, a TOKEN authorizer and a plugin, wired by functions.yaml."""
