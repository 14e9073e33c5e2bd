# Types for compiling _protocol_py.py as _protocol_c (Cython pure-Python mode). The .py file is
# the source of both builds; this file only declares what the compiled build makes C-level:
# attribute layouts (extension types) and methods called from inside the module (cpdef).

cimport cython

# The runtime types under C names of their own (the .py file imports the Python names for its
# annotations, which stay plain objects).
from fastgw.config._runtime_c cimport PipelineHead as CPipe
from fastgw.config._runtime_c cimport ProxyIntegration as CIntegration
from fastgw.config._runtime_c cimport RouteRuntime as CRoute
from fastgw.config._runtime_c cimport RuntimeSnapshot as CSnapshot
from fastgw.config._runtime_c cimport Site as CSite
from fastgw.config._runtime_c cimport StageRuntime as CStage
from fastgw.config._runtime_c cimport Target as CTarget
from fastgw.cache._memory_c cimport CacheHead as CCache
from fastgw.server._reply_c cimport LocalReply as CReply
from fastgw.telemetry._access_c cimport AccessLine
from fastgw_core._headers_c cimport local_response, relay_response, request_id, rewrite_response_head
from fastgw_core._limits_c cimport SharedTable as CTable
from fastgw_core._reqhead_c cimport parse_request_head
from fastgw_core._router_c cimport RouteMatch, RouteTrie
from fastgw_core._urlnorm_c cimport normalize_path
from fastgw_core._stats_c cimport RouteStats as CStats

cdef unsigned long long _rid
cdef dict _HOSTS, _REQ_SPECIAL, _METHODS, _METHOD_BYTES
cdef int _PAUSE_UPSTREAM, _PAUSE_PIPELINE, _PAUSE_HALT
cdef bytes CONN_CLOSE, CONN_KEEP_ALIVE, CONTINUE_100
cdef int IN_HEAD, IN_HTTP10, IN_CLOSE, IN_RAW, OUT_CLOSE, OUT_CHUNKED

cdef class Exchange
cdef class _Resolved
cdef class UpstreamConnection
cdef class UpstreamPool
cdef class Pools


@cython.locals(prefixes=dict, end=Py_ssize_t, first=str)
cpdef tuple resolve_stage(CSite site, str path)
@cython.locals(parts=tuple, text=str, value=bytes, params=dict)
cpdef bytes render_path(CIntegration integ, params)
cdef _forwarded(list parts, HttpProtocol proto, bytes xff, object xfwd, bytes host)
@cython.locals(blob=bytes, line=str, name=str, value=str)
cpdef fwd_headers(list fwd, list out)
@cython.locals(got=tuple, text=str, h=str, domain=str)
cpdef tuple _host(bytes host)


cdef class _Resolved:
    cdef public object stage
    cdef public str path, inner, method
    cdef public RouteMatch match
    cdef public bytes target


cdef class WorkerState:
    cdef public object snapshot, tracer, gate, table
    cdef public bytes date_line
    cdef public bint draining


cdef class HttpProtocol:
    cdef public WorkerState hot
    cdef public object worker, loop, limits, transport, parser, queue, deadline_reply
    cdef public object cl, te, conn_tokens, xff, xfwd, host
    cdef public Exchange active, cur
    cdef public Pools pools
    cdef public Py_ssize_t body_bytes, head_bytes, lim_head, lim_url, lim_body, raw_left
    cdef public int lim_headers
    cdef public double t_header, t_body, t_keepalive, body_start
    cdef public Py_ssize_t min_body_rate
    cdef public long completed
    cdef public int paused, headers_n, host_n
    cdef public double deadline
    cdef public bint expect, in_head, peer_trusted, upgrade, write_paused, parser_idle
    cdef public list fwd
    cdef public str peer, local_port
    cdef public bytes url, xfwd_lines, xfwd_host_line, api_key, key_value
    cdef public object key_rt
    cdef public long key_gen
    cdef public object xfwd_host_key
    cdef public object tls_name, tls_cert
    cdef public object ws
    # PERF: bound methods and per-worker values read on every request, fetched once.
    cdef public object clock, twrite
    cdef public set waiting
    cdef public bytes rid_prefix
    cdef public object site, site_host, site_snapshot

    cpdef _reset_request(self)
    cpdef _pause_reading(self, int reason)
    cpdef _resume_reading(self, int reason)
    cpdef _halt_reading(self)
    cpdef fail(self, reply)
    cpdef exchange_done(self, Exchange ex, double now=*)
    cpdef head_done(self, str method, bint http10, bint keep_alive)
    cpdef on_message_complete(self, double now=*)


@cython.freelist(64)
cdef class Exchange:
    cdef public HttpProtocol proto
    cdef public UpstreamConnection conn
    cdef public UpstreamPool pool
    cdef public object buf, integration, local_error, route, snapshot, params, gate, gwr, cache_key, collect, up_buf
    cdef public str up_method
    cdef public int up_status
    cdef public object pipeline, task, p_fwd, p_host, p_xff, p_xfwd, p_api_key, p_key_id, trace
    cdef public str p_path, p_inner
    cdef public str method
    cdef public list out
    cdef public bytes query, req_head, target_path, request_id, url
    cdef public Py_ssize_t body_len, buf_bytes, resp_len
    cdef public int body_mode
    cdef public double deadline, p_deadline, t0, t_int, int_ms
    cdef public int cache_state
    cdef public bint http10, keep_alive, request_done, response_started, response_done
    cdef public bint retried, resp_chunked, expect

    @cython.locals(snapshot=CSnapshot, site=CSite, stage=CStage, canary=CStage,
                   trie=RouteTrie, match=RouteMatch, route=CRoute, resolved=dict, entry=_Resolved, method=str,
                   target=bytes, taken=tuple, params=dict, cache=CCache, raw_path=bytes, path=str,
                   pipeline=CPipe, table=CTable)
    cpdef prepare(self, bytes url)
    @cython.locals(integ=CIntegration)
    cpdef _build_upstream_head(self, bytes target, bytes host)
    cpdef capture(self, list fwd, bytes host, str path, str inner)
    @cython.locals(cache=CCache)
    cpdef start(self, double now=*)
    @cython.locals(integ=CIntegration)
    cpdef dispatch(self, double now=*)
    cpdef start_pipeline(self)
    @cython.locals(headers=list)
    cpdef tuple request_headers(self, bytes body)
    @cython.locals(headers=list)
    cpdef build_request(self)
    cpdef pipeline_done(self, reply)
    cpdef pipeline_proxy(self, integ, bytes target, head, bytes body)
    cpdef _build_pipeline_head(self, bytes target)
    cpdef request_body(self, bytes data)
    cpdef request_complete(self, double now=*)
    cpdef upstream_ready(self, UpstreamConnection conn)
    cpdef upstream_failed(self, bint reused, bint got_bytes)
    cpdef int response_flags(self)
    cpdef upstream_whole(self, bytes out, int status, int out_flags, bint keep_alive, Py_ssize_t body_len)
    cpdef collected_whole(self, bytes data, int status, bint keep_alive, Py_ssize_t body_len)
    cpdef upstream_head(self, int status, bytes raw_head, UpstreamConnection conn)
    cpdef upstream_body(self, bytes data)
    cpdef flush_out(self)
    @cython.locals(t_int=double, now=double)
    cpdef upstream_done(self, bint keep_alive)
    cpdef respond_local(self, CReply reply, double now=*)
    @cython.locals(access_log=AccessLine, stats=CStats)
    cpdef observe(self, CRoute route, int status, double now)
    cpdef abort_upstream(self)


cdef class UpstreamConnection:
    cdef public UpstreamPool pool
    cdef public Exchange client
    cdef public object transport, parser, twrite, closing
    cdef public bytes head_buf
    cdef public double idle_since
    cdef public bint awaiting_head, got_bytes, reused, skip_body

    cpdef send(self, Exchange client, bytes data)
    cpdef abort(self)
    cpdef release(self, bint reusable, double now=*)


cdef class UpstreamPool:
    cdef public CTarget target
    cdef public object settings, loop, waiters, clock
    cdef public list idle
    cdef public set all
    cdef public int connecting, failures, max_idle
    cdef public double ejected_until

    @cython.locals(conn=UpstreamConnection)
    cpdef acquire(self, Exchange client)
    cpdef put_idle(self, UpstreamConnection conn, double now=*)
    cpdef forget(self, UpstreamConnection conn)
    cpdef record_failure(self)


cdef class Pools:
    cdef public object loop, settings
    cdef public dict pools

    cpdef UpstreamPool get(self, CTarget target)
    @cython.locals(targets=list, n=Py_ssize_t)
    cpdef UpstreamPool pick(self, CIntegration integ, double now)
