"""Build the compiled kernels of fastgw_core.

Each kernel ships as a pure-Python twin (``_x_py.py``) and a compiled build (``_x_c``).
The compiled build is produced here with Cython; when ``FASTGW_NO_EXTENSIONS=1`` is set at
build time nothing is compiled and the twins are used at run time. ``FASTGW_BUILD_ONLY=a,b``
(development) builds only the extensions whose module name contains one of the parts.
"""

import os
import shutil

from setuptools import Extension, setup

KERNELS = ["router", "urlnorm", "headers", "reqhead", "limits", "cachekey", "stats"]
# Pure-Python modules compiled as they are (Cython pure-Python mode, aiohttp's reader_c
# pattern): SRC_py.py is copied to SRC_c.py and compiled with the types of SRC_c.pxd.
PURE_MODE = [
    "fastgw/server/_protocol",
    "fastgw/telemetry/_tracing",
    "fastgw/telemetry/_access",
    "fastgw/functions/_lambda",
    "fastgw/config/_runtime",
    "fastgw/server/_reply",
    "fastgw/pipeline/_lean",
    "fastgw/cache/_memory",
]


def extensions() -> list[Extension]:
    if os.environ.get("FASTGW_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize

    debug = bool(os.environ.get("FASTGW_DEBUG"))
    macros = [("CYTHON_TRACE_NOGIL", "1")] if debug else []
    exts = [
        Extension(
            f"fastgw_core._{name}_c",
            [f"fastgw_core/_{name}_c.pyx"],
            define_macros=macros,
            extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
        )
        for name in KERNELS
    ]
    for stem in PURE_MODE:
        shutil.copyfile(f"{stem}_py.py", f"{stem}_c.py")
        exts.append(
            Extension(
                stem.replace("/", ".") + "_c",
                [f"{stem}_c.py"],
                define_macros=macros,
                extra_compile_args=["-O2"] if not debug else ["-O0", "-g"],
            )
        )
    only = os.environ.get("FASTGW_BUILD_ONLY")  # development: rebuild only the extensions named so
    if only:
        exts = [e for e in exts if any(part in e.name for part in only.split(","))]
    return cythonize(
        exts,
        language_level=3,
        compiler_directives={
            "boundscheck": debug,
            "wraparound": debug,
            "linetrace": debug,
            "embedsignature": True,
        },
    )


setup(ext_modules=extensions())
