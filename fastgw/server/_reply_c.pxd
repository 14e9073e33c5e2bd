# Types for compiling _reply_py.py as _reply_c (Cython pure-Python mode): a LocalReply's fields
# are C slots, read by the compiled protocol as struct members.


cdef class LocalReply:
    cdef public object status, head, body, kind, message
