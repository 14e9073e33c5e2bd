# The compiled header kernels as C functions for the compiled modules that cimport them (the
# protocol, the memory cache): no argument objects, no Python call per request.
cpdef tuple rewrite_response_head(bytes raw, bytes request_id, int flags)
cpdef tuple relay_response(bytes data, bytes request_id, int flags)
cpdef bytes request_id(bytes prefix, unsigned long long n)
cpdef bytes local_response(head, request_id, date_line, conn_line, body)
cpdef bint has_header_line(lines, tuple names) except -1
