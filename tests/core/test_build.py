"""Which build loads: the compiled kernels after an install, the twins when disabled."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import NO_EXTENSIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(NO_EXTENSIONS, reason="FASTGW_NO_EXTENSIONS is set")
def test_compiled_kernels_are_loaded() -> None:
    import fastgw_core._cachekey_c
    import fastgw_core._headers_c
    import fastgw_core._limits_c
    import fastgw_core._reqhead_c
    import fastgw_core._router_c
    import fastgw_core._stats_c
    import fastgw_core._urlnorm_c

    assert fastgw_core.COMPILED == {
        "router": True,
        "urlnorm": True,
        "headers": True,
        "reqhead": True,
        "limits": True,
        "cachekey": True,
        "stats": True,
    }
    assert fastgw_core.stats.RouteStats is fastgw_core._stats_c.RouteStats
    assert fastgw_core.headers.rewrite_response_head is fastgw_core._headers_c.rewrite_response_head
    assert fastgw_core.router.RouteTrie.__module__ == "fastgw_core._router_c"
    assert fastgw_core.router.RouteMatch.__module__ == "fastgw_core._router_c"
    assert fastgw_core.urlnorm.normalize_path.__module__ == "fastgw_core._urlnorm_c"
    assert fastgw_core.limits.SharedTable is fastgw_core._limits_c.SharedTable
    assert fastgw_core.limits.SharedTableC is fastgw_core._limits_c.SharedTable
    assert fastgw_core.cachekey.KeySpec is fastgw_core._cachekey_c.KeySpec
    assert fastgw_core.cachekey.cache_key is fastgw_core._cachekey_c.cache_key
    from fastgw.cache import _memory_c, store
    from fastgw.config import _runtime_c, compile, runtime
    from fastgw.pipeline import _lean_c, lean
    from fastgw.server import _protocol_c, _reply_c, protocol, replies
    from fastgw.telemetry import _access_c, _tracing_c, access, tracing

    assert access.COMPILED is True
    assert protocol.COMPILED is True
    assert protocol.HttpProtocol is _protocol_c.HttpProtocol
    assert replies.COMPILED is True
    assert replies.LocalReply is _reply_c.LocalReply
    assert lean.COMPILED is True
    assert lean.LeanHttp is _lean_c.LeanHttp
    assert store.COMPILED is True
    assert store.MemoryCache is _memory_c.MemoryCache
    assert tracing.COMPILED is True
    assert tracing.Tracer is _tracing_c.Tracer
    assert runtime.COMPILED is True
    assert compile.RouteRuntime is runtime.RouteRuntime is _runtime_c.RouteRuntime
    for module in (
        fastgw_core._router_c,
        fastgw_core._urlnorm_c,
        fastgw_core._headers_c,
        fastgw_core._reqhead_c,
        fastgw_core._limits_c,
        fastgw_core._cachekey_c,
        fastgw_core._stats_c,
        _protocol_c,
        _tracing_c,
        _access_c,
        _runtime_c,
        _reply_c,
        _lean_c,
        _memory_c,
    ):
        assert module.__file__ is not None
        assert module.__file__.endswith(".so"), module.__file__


def test_no_extensions_binds_the_python_twins() -> None:
    code = textwrap.dedent(
        """
        import sys
        import fastgw_core
        from fastgw_core import headers, limits, router, urlnorm
        assert not any(fastgw_core.COMPILED.values()), fastgw_core.COMPILED
        assert set(fastgw_core.COMPILED) == {
            "router", "urlnorm", "headers", "reqhead", "limits", "cachekey", "stats"
        }
        assert headers.rewrite_response_head is headers.rewrite_response_head_py
        assert headers.rewrite_response_head_c is None
        from fastgw.server import protocol
        assert protocol.COMPILED is False
        assert protocol.HttpProtocol.__module__ == "fastgw.server._protocol_py"
        from fastgw.server import replies
        assert replies.COMPILED is False
        assert replies.LocalReply.__module__ == "fastgw.server._reply_py"
        assert "fastgw.server._reply_c" not in sys.modules
        from fastgw.pipeline import lean
        assert lean.COMPILED is False
        assert lean.LeanHttp.__module__ == "fastgw.pipeline._lean_py"
        assert "fastgw.pipeline._lean_c" not in sys.modules
        from fastgw.cache import store
        assert store.COMPILED is False
        assert store.MemoryCache.__module__ == "fastgw.cache._memory_py"
        assert "fastgw.cache._memory_c" not in sys.modules
        from fastgw.telemetry import tracing
        assert tracing.COMPILED is False
        assert tracing.Tracer.__module__ == "fastgw.telemetry._tracing_py"
        from fastgw.telemetry import access
        assert access.COMPILED is False
        from fastgw.config import compile, runtime
        assert runtime.COMPILED is False
        assert compile.RouteRuntime.__module__ == "fastgw.config._runtime_py"
        assert "fastgw.config._runtime_c" not in sys.modules
        assert router.RouteTrie is router.RouteTriePy
        assert router.RouteTrie.__module__ == "fastgw_core._router_py"
        assert router.RouteMatch.__module__ == "fastgw_core._router_py"
        assert router.RouteTrieC is None
        assert urlnorm.normalize_path is urlnorm.normalize_path_py
        assert urlnorm.normalize_path.__module__ == "fastgw_core._urlnorm_py"
        assert urlnorm.normalize_path_c is None
        assert "fastgw_core._router_c" not in sys.modules
        assert "fastgw_core._urlnorm_c" not in sys.modules
        assert limits.COMPILED is False
        assert limits.SharedTable is limits.SharedTablePy
        assert limits.SharedTable.__module__ == "fastgw_core._limits_py"
        assert limits.SharedTableC is None
        assert "fastgw_core._limits_c" not in sys.modules
        from fastgw_core import cachekey
        assert cachekey.COMPILED is False
        assert cachekey.KeySpec is cachekey.KeySpecPy
        assert cachekey.cache_key is cachekey.cache_key_py
        assert cachekey.KeySpecC is None and cachekey.cache_key_c is None
        assert "fastgw_core._cachekey_c" not in sys.modules
        print("ok")
        """
    )
    env = {**os.environ, "FASTGW_NO_EXTENSIONS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_python_twins_import_without_cython() -> None:
    """An installed fastgw has no Cython at run time: every pure-Python twin must import without
    it (FASTGW_NO_EXTENSIONS=1 uses them)."""
    code = textwrap.dedent(
        """
        import importlib, sys
        sys.modules["cython"] = None  # as on a machine where only the wheel is installed
        for name in (
            "fastgw.server._protocol_py", "fastgw.telemetry._tracing_py", "fastgw.telemetry._access_py",
            "fastgw.server._reply_py", "fastgw.pipeline._lean_py", "fastgw.cache._memory_py",
            "fastgw_core._router_py", "fastgw_core._urlnorm_py", "fastgw_core._headers_py",
            "fastgw_core._reqhead_py", "fastgw_core._limits_py", "fastgw_core._cachekey_py",
            "fastgw_core._stats_py",
        ):
            importlib.import_module(name)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_a_source_tree_without_extensions_runs_the_twins(tmp_path: Path) -> None:
    """``pip install .`` (not editable) compiles into the wheel and leaves setup.py's build copies
    of the pure-mode sources (``X_c.py``) in the source tree, without their extensions; run from
    that tree (``python3 -m fastgw run`` in the clone), the copies must not pass for the compiled
    build (their compiled-only branches would fail), and every facade takes the Python twin."""
    import shutil

    for pkg in ("fastgw", "fastgw_core"):
        shutil.copytree(
            REPO_ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__")
        )
    for stem in ("fastgw/server/_protocol", "fastgw/telemetry/_tracing", "fastgw/telemetry/_access",
                 "fastgw/functions/_lambda", "fastgw/server/_reply", "fastgw/pipeline/_lean",
                 "fastgw/cache/_memory"):  # fmt: skip
        shutil.copyfile(tmp_path / f"{stem}_py.py", tmp_path / f"{stem}_c.py")
    code = textwrap.dedent(
        """
        import sys
        # Only this tree: not the editable install's finder (it maps the repository's modules).
        sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", "")]
        import fastgw, fastgw_core
        from fastgw.functions import events
        from fastgw.server import protocol, replies
        from fastgw.telemetry import access, tracing
        assert fastgw.__file__.startswith(ROOT), fastgw.__file__
        assert not any(fastgw_core.COMPILED.values()), fastgw_core.COMPILED
        assert (events.COMPILED, protocol.COMPILED, access.COMPILED, tracing.COMPILED) == (
            False, False, False, False)
        assert replies.COMPILED is False
        from fastgw.pipeline import lean
        assert lean.COMPILED is False
        from fastgw.cache import store
        assert store.COMPILED is False
        reply = events.fast_reply_v1({"statusCode": 200, "body": "hi"}, True)
        assert (reply.status, reply.body) == (200, b"hi"), reply
        print("ok")
        """
    ).replace("ROOT", repr(str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if k not in ("FASTGW_NO_EXTENSIONS", "PYTHONPATH")}
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
