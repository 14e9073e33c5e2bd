# Types for compiling _runtime_py.py as _runtime_c (Cython pure-Python mode): every runtime class
# is an extension type with its fields in C slots, so the compiled protocol (which cimports them)
# reads a field as a struct member.


cdef class Target:
    cdef public object scheme, host, port, host_header, key, version_host, pool


cdef class ProxyIntegration:
    cdef public object targets, path_parts, static_path, single_param, uri_query, pass_query, rr
    cdef public double timeout


cdef class MockRuntime:
    cdef public object reply


cdef class FunctionRuntime:
    cdef public object uri


cdef class ApiRuntime:
    cdef public object name, id, kind, not_found, region, account_id, binary_types, cors


cdef class StageRuntime:
    cdef public ApiRuntime api
    cdef public object name, variables, trie, routes, gateway_responses, deployment_id
    cdef public object canary, canary_percent, is_canary, access_log, websocket


cdef class PipelineHead:
    cdef public bint early_gate
    cdef public object fast_auth


cdef class RouteRuntime:
    cdef public object key
    cdef public ApiRuntime api
    cdef public StageRuntime stage
    cdef public object integration, api_key_required, throttle, stage_uid, resource_method
    cdef public object levels, method, template, pipeline, event_static, auth_scopes, cache, stats
    cdef public tuple level_args


cdef class Site:
    cdef public object prefixes, long_prefixes, root, not_found, mtls
    cdef public dict resolved


cdef class RuntimeSnapshot:
    cdef public object config, digest, default_site, hosts, api_sites, apis, stages
    cdef public object trusted_proxies, targets, host_cache
