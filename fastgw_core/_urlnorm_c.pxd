# The compiled normaliser as a C function for the compiled modules that cimport it (the protocol).
cpdef str normalize_path(str raw)
