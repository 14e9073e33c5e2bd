# The compiled head parser as a C function for the compiled modules that cimport it (the
# protocol): no argument objects, no Python call per request.
cpdef tuple parse_request_head(bytes data, Py_ssize_t start, Py_ssize_t max_head, Py_ssize_t max_headers, Py_ssize_t max_url)
