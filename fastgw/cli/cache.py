"""``fastgw cache flush|purge``: invalidate a stage's response cache through the admin API.

The admin API records the purge in the state store; every worker of every node applies it on its
next state reload (within a second). The connection options (``--admin``, ``--token``, ``-c``,
``--json``, ``--timeout``) and exit codes are those of the other admin commands
(``fastgw.admin.client``).
"""

from __future__ import annotations

import argparse
from typing import Any

from fastgw.admin.client import AdminClient, _common, _done, _leaf

METHODS = ("*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def cmd_cache_flush(c: AdminClient, args: argparse.Namespace) -> int:
    c.flush_stage_cache(args.api, args.stage)
    doc = {"restApiId": args.api, "stageName": args.stage, "flushed": True}
    return _done(
        args, doc, f"flush of {args.api}:{args.stage} accepted; every worker applies it within a second"
    )


def cmd_cache_purge(c: AdminClient, args: argparse.Namespace) -> int:
    purge = c.purge_stage_cache(
        args.api, args.stage, path=args.path or "", method=args.method, prefix=args.prefix, key=args.key or ""
    )
    if purge.get("key"):
        what = f"key {purge['key']}"
    else:
        what = f"{purge['method']} {purge['path']}{'*' if purge['op'] == 'prefix' else ''}"
    return _done(
        args, purge, f"purge {purge['seq']} of {purge['stage']} accepted: {what}; applied within a second"
    )


def add_cache_commands(sub: Any) -> None:
    """Add ``cache`` (flush, purge) to the ``fastgw`` subcommands."""
    common = _common()
    cache = sub.add_parser("cache", help="stage response caches (through the admin API)")
    cs = cache.add_subparsers(dest="cache_command", required=True)
    for name, func, text in (
        ("flush", cmd_cache_flush, "drop every cached response of a stage (AWS FlushStageCache)"),
        ("purge", cmd_cache_purge, "drop the cached responses of a resource path, a path prefix or a key"),
    ):
        p = _leaf(cs, name, func, text, common)
        p.add_argument("--api", required=True, metavar="ID", help="API id (apis[].id or derived) or name")
        p.add_argument("--stage", required=True, metavar="NAME", help="stage name")
        if name == "purge":
            p.add_argument("--path", help="resource path inside the stage, e.g. /pets/1 (no stage prefix)")
            p.add_argument(
                "--method", default="*", type=str.upper, choices=METHODS, help="only this method (default: *)"
            )
            p.add_argument("--prefix", action="store_true", help="every path starting with --path")
            p.add_argument("--key", help="one entry: its cache key hash (hex) or canonical key, as given")
