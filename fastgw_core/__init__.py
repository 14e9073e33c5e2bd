"""fastgw_core: sans-IO kernels of the fastgw hot path.

Every kernel module here is a facade that binds the compiled build (``_x_c``) unless
``FASTGW_NO_EXTENSIONS`` is set or the extension is missing, in which case it binds the
pure-Python twin (``_x_py``). ``COMPILED`` reports which build each facade loaded.
"""

from fastgw_core import cachekey, headers, limits, reqhead, router, stats, urlnorm

__version__ = "0.1.0"

COMPILED: dict[str, bool] = {
    "router": router.COMPILED,
    "urlnorm": urlnorm.COMPILED,
    "headers": headers.COMPILED,
    "reqhead": reqhead.COMPILED,
    "limits": limits.COMPILED,
    "cachekey": cachekey.COMPILED,
    "stats": stats.COMPILED,
}

__all__ = [
    "COMPILED",
    "__version__",
    "cachekey",
    "headers",
    "limits",
    "reqhead",
    "router",
    "stats",
    "urlnorm",
]
