"""The admin API (API keys, usage plans, usage) and its client.

``server.serve_admin`` / ``server.run_admin_process`` serve it on its own listener;
``token`` decides the bearer token; ``client.AdminClient`` is what the CLI uses.
"""
