"""The ``fastgw`` command: run | validate | reload | routes | schema | version | keys | plans | usage."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

DEFAULT_CONFIG_NAMES = ("fastgw.yaml", "fastgw.yml", "fastgw.json")
DEFAULT_PID_FILE = "fastgw.pid"


def _find_config(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("FASTGW_CONFIG")
    if env:
        return Path(env)
    for name in DEFAULT_CONFIG_NAMES:
        if Path(name).is_file():
            return Path(name)
    return None


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _print_issues(ex: Exception) -> None:
    from fastgw.config.load import ConfigError

    if isinstance(ex, ConfigError):
        print(f"{ex.source}: invalid configuration ({len(ex.issues)} error(s))", file=sys.stderr)
        for issue in ex.issues:
            print(f"  {issue.path}: {issue.message}", file=sys.stderr)
    else:
        print(str(ex), file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from fastgw.config.compile import check_document, compile_config
    from fastgw.config.load import ConfigError, ConfigIssue, load_config_file, parse_document

    ok = True
    for path in args.files:
        try:
            data = parse_document(Path(path).read_bytes(), path)
        except OSError as ex:
            _print_issues(ConfigError([ConfigIssue("$", f"cannot read {path}: {ex.strerror}")], path))
            ok = False
            continue
        except ConfigError as ex:
            _print_issues(ex)
            ok = False
            continue
        issues = check_document(data, path)
        if issues:
            _print_issues(ConfigError(issues, path))
            ok = False
            continue
        snapshot = compile_config(load_config_file(path), path)
        routes = sum(len(s.trie) for s in snapshot.stages)
        print(f"{path}: OK ({len(snapshot.apis)} API(s), {len(snapshot.stages)} stage(s), {routes} route(s))")
    return 0 if ok else 1


def _make_loader(
    args: argparse.Namespace,
) -> tuple[Callable[[], object], list[tuple[str, Callable[[], None]]]]:
    from fastgw.config.load import load_config_file
    from fastgw.demo import DEMO_CONFIG

    openapi = getattr(args, "openapi", None)
    path = args.config if openapi else _find_config(args.config)
    helpers: list[tuple[str, Callable[[], None]]] = []
    variables: dict[str, str] = {}
    if path is None and not openapi:
        from fastgw.demo.echo import run_echo

        path = DEMO_CONFIG
        echo_port = _free_port()
        variables["echo"] = f"127.0.0.1:{echo_port}"
        helpers.append(("echo-backend", lambda: run_echo("127.0.0.1", echo_port)))
        print(
            f"fastgw: no config file given or found; serving the demo ({DEMO_CONFIG.name}) "
            f"with its echo backend on 127.0.0.1:{echo_port}",
            file=sys.stderr,
        )

    def load() -> object:
        if openapi:
            from fastgw.cli.openapi_cli import openapi_config

            config, notes = openapi_config(args, load_config_file(path) if path else None)
            for note in notes:
                print(note, file=sys.stderr)
        else:
            config = load_config_file(path)
        gw = config.gateway
        if args.listen:
            gw = msgspec.structs.replace(gw, listen=args.listen)
        if args.workers is not None:
            gw = msgspec.structs.replace(gw, workers=args.workers)
        if getattr(args, "tls_listen", None) and gw.tls is not None:
            gw = msgspec.structs.replace(gw, tls=msgspec.structs.replace(gw.tls, listen=args.tls_listen))
        if args.admin_listen or args.no_admin:
            admin = gw.admin
            if args.admin_listen:
                admin = msgspec.structs.replace(admin, listen=args.admin_listen)
            if args.no_admin:
                admin = msgspec.structs.replace(admin, enabled=False)
            gw = msgspec.structs.replace(gw, admin=admin)
        if args.state:
            gw = msgspec.structs.replace(gw, state=msgspec.structs.replace(gw.state, path=args.state))
        config = msgspec.structs.replace(config, gateway=gw)
        if variables:
            apis = []
            for api in config.apis:
                stages = [
                    msgspec.structs.replace(s, variables={**s.variables, **variables}) for s in api.stages
                ]
                apis.append(msgspec.structs.replace(api, stages=stages))
            config = msgspec.structs.replace(config, apis=apis)
        return config

    return load, helpers


def cmd_run(args: argparse.Namespace) -> int:
    from fastgw.config.compile import compile_config
    from fastgw.config.load import ConfigError
    from fastgw.logs import setup_logging
    from fastgw.server.supervisor import Supervisor

    setup_logging(args.log_level)
    load, helpers = _make_loader(args)
    try:
        config = load()
        compile_config(config)  # type: ignore[arg-type]
    except ConfigError as ex:
        _print_issues(ex)
        return 2
    workers = config.gateway.workers or os.cpu_count() or 1  # type: ignore[attr-defined]
    sup = Supervisor(load, workers, pid_file=args.pid_file, helpers=helpers)  # type: ignore[arg-type]
    listen = config.gateway.listen  # type: ignore[attr-defined]
    print(f"fastgw: listening on http://{listen} with {workers} worker(s)", file=sys.stderr)
    if getattr(args, "openapi", None):
        from fastgw.cli.openapi_cli import describe

        for line in describe(config, listen):
            print(line, file=sys.stderr)
    tls = config.gateway.tls  # type: ignore[attr-defined]
    if tls is not None:
        print(f"fastgw: listening on https://{tls.listen}", file=sys.stderr)
    elif args.tls_listen:
        print("fastgw: --tls-listen ignored: the config has no gateway.tls", file=sys.stderr)
    return sup.run()


def cmd_reload(args: argparse.Namespace) -> int:
    try:
        pid = int(Path(args.pid_file).read_text().strip())
    except (OSError, ValueError) as ex:
        print(f"fastgw reload: cannot read pid file {args.pid_file}: {ex}", file=sys.stderr)
        return 1
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"fastgw reload: no process {pid}", file=sys.stderr)
        return 1
    print(f"fastgw reload: SIGHUP sent to {pid}")
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    from fastgw.config.compile import ProxyIntegration, compile_config
    from fastgw.config.load import ConfigError, load_config_file
    from fastgw.demo import DEMO_CONFIG
    from fastgw.pipeline.order import describe

    path = _find_config(args.config) or DEMO_CONFIG
    try:
        snapshot = compile_config(load_config_file(path), str(path))
    except ConfigError as ex:
        _print_issues(ex)
        return 1
    for stage in snapshot.stages:
        prefix = "" if stage.name == "$default" else f"/{stage.name}"
        print(f"{stage.api.name} ({stage.api.kind}, id {stage.api.id}) stage {stage.name}")
        for method, template in stage.trie.routes():
            print(f"  {method:7} {prefix}{template}")
    if args.explain:
        method, _, target = args.explain.partition(" ")
        from fastgw_core.urlnorm import normalize_path

        host = args.host.lower() if args.host else ""
        site = snapshot.site_for(host)
        raw_path, _, _ = target.partition("?")
        path = normalize_path(raw_path)
        stage, inner = site.resolve(path)
        print(f"\nexplain {method} {target} (host {host or '-'})")
        print(f"  normalised path: {path}")
        if stage is None:
            print(f"  no stage matches -> {site.not_found.status}")
            return 0
        print(f"  stage: {stage.api.name}/{stage.name}, path inside stage: {inner}")
        m = stage.trie.match(method.upper(), inner)
        if m is None:
            print(f"  no route matches -> {stage.api.not_found.status}")
            return 0
        print(f"  route: {m.method} {m.template}  params: {m.params}")
        integ = m.value.integration
        if isinstance(integ, ProxyIntegration):
            t = integ.targets[0]
            print(f"  upstream: http://{t.host}:{t.port}{integ.render_path(m.params).decode()}")
        print("  pipeline (in order):")
        for line in describe(m.value):
            print(f"    {line}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from fastgw.config.model import json_schema

    if args.markdown:
        from fastgw.config.docs import reference_markdown

        print(reference_markdown())
        return 0
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(json_schema())).decode() + "\n")
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    import fastgw
    import fastgw_core

    print(f"fastgw {fastgw.__version__}")
    if args.verbose:
        import httptools
        import uvloop

        print(
            f"python {sys.version.split()[0]}, uvloop {uvloop.__version__}, httptools {httptools.__version__}"
        )
        print(f"msgspec {msgspec.__version__}")
        no_ext = " (FASTGW_NO_EXTENSIONS is set)" if os.environ.get("FASTGW_NO_EXTENSIONS") else ""
        from fastgw.cache import store
        from fastgw.config import runtime
        from fastgw.functions import events
        from fastgw.pipeline import lean
        from fastgw.server import protocol, replies
        from fastgw.telemetry import access, tracing

        builds = [(f"fastgw_core.{name}", compiled) for name, compiled in fastgw_core.COMPILED.items()]
        builds.append(("fastgw.server.protocol", protocol.COMPILED))
        builds.append(("fastgw.telemetry.tracing", tracing.COMPILED))
        builds.append(("fastgw.telemetry.access", access.COMPILED))
        builds.append(("fastgw.functions.events", events.COMPILED))
        builds.append(("fastgw.config.runtime", runtime.COMPILED))
        builds.append(("fastgw.server.replies", replies.COMPILED))
        builds.append(("fastgw.pipeline.lean", lean.COMPILED))
        builds.append(("fastgw.cache.store", store.COMPILED))
        for name, compiled in builds:
            impl = "compiled (Cython)" if compiled else "pure Python"
            print(f"{name}: {impl}{no_ext if not compiled else ''}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastgw", description="fastgw: a self-hosted API gateway")
    sub = p.add_subparsers(dest="command")

    run = sub.add_parser("run", help="serve the gateway")
    run.add_argument(
        "-c", "--config", help="config file (default: ./fastgw.yaml, $FASTGW_CONFIG, else the demo)"
    )
    run.add_argument("--listen", help="HOST:PORT (overrides gateway.listen)")
    run.add_argument("--tls-listen", help="HOST:PORT of the HTTPS listener (overrides gateway.tls.listen)")
    run.add_argument("--workers", type=int, help="worker processes (default: gateway.workers, 0 = CPU count)")
    run.add_argument("--admin-listen", help="HOST:PORT of the admin API (overrides gateway.admin.listen)")
    run.add_argument("--no-admin", action="store_true", help="do not serve the admin API")
    run.add_argument("--state", help="SQLite state file (overrides gateway.state.path)")
    run.add_argument("--pid-file", default=DEFAULT_PID_FILE, help="where the supervisor writes its pid")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=cmd_run)
    from fastgw.cli.openapi_cli import add_import_command, add_run_options  # (fastgw/cli/openapi_cli.py)

    add_run_options(run)
    add_import_command(sub)

    val = sub.add_parser("validate", help="check config files; print every error with its path")
    val.add_argument("files", nargs="+")
    val.set_defaults(func=cmd_validate)

    rel = sub.add_parser("reload", help="make a running gateway re-read its config (SIGHUP)")
    rel.add_argument("--pid-file", default=DEFAULT_PID_FILE)
    rel.set_defaults(func=cmd_reload)

    routes = sub.add_parser("routes", help="list routes; --explain 'GET /prod/x' shows how a request matches")
    routes.add_argument("-c", "--config")
    routes.add_argument("--explain", metavar="'METHOD /path'")
    routes.add_argument("--host", help="Host header for --explain")
    routes.set_defaults(func=cmd_routes)

    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument(
        "--markdown", action="store_true", help="the README's configuration reference instead"
    )
    schema.set_defaults(func=cmd_schema)

    ver = sub.add_parser("version", help="print versions; --verbose says which kernel builds are loaded")
    ver.add_argument("--verbose", "-v", action="store_true")
    ver.set_defaults(func=cmd_version)

    # keys | plans | usage: clients of the admin API (fastgw/admin/client.py)
    from fastgw.admin.client import add_admin_commands

    add_admin_commands(sub)
    from fastgw.cli.cache import add_cache_commands  # cache flush | purge (fastgw/cli/cache.py)

    add_cache_commands(sub)
    from fastgw.cli.deploy import add_deploy_commands  # deploy, stages, rollback, ... (fastgw/cli/deploy.py)

    add_deploy_commands(sub)
    from fastgw.cli.top import add_top_command  # top (fastgw/cli/top.py)

    add_top_command(sub)
    from fastgw.mapping.cli import add_render_template_command  # render-template (fastgw/mapping/cli.py)

    add_render_template_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
