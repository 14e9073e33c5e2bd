"""OpenAPI documents on the command line: ``fastgw run --openapi FILE`` and ``fastgw import FILE``.

``fastgw run --openapi FILE [--openapi FILE ...] [--kind rest|http] [--stage NAME] [--function
NAME=module:callable ...] [--stage-variable KEY=VALUE ...] [--strict]`` imports the documents
(``fastgw.openapi``), adds them to the config (``-c`` file or the defaults: no demo), binds the
Lambda function names their URIs use to Python callables, and serves them. Every reload (SIGHUP)
imports the files again; a document that no longer imports is rejected with the path of each
problem and the running APIs keep serving.

``fastgw import FILE [--kind] [--strict] [--mode overwrite|merge] [-c CONFIG] [-o OUT]`` writes
the config with the imported API (replacing, or merging into, the config's API of the same name
or id) as YAML, to stdout or ``OUT``: the APIs-as-code path (then ``fastgw reload`` and
``fastgw deploy``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from fastgw.config.load import ConfigError, ConfigIssue


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError([ConfigIssue("$", f"{flag} {item!r}: expected NAME=VALUE")], "command line")
        out[name] = value
    return out


def _issues(ex: Any, source: str) -> ConfigError:
    """An OpenApiImportError as a ConfigError naming the document."""
    return ConfigError([ConfigIssue(p.path, p.message) for p in ex.problems], source)


def add_run_options(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("OpenAPI (AWS API Gateway exports)")
    group.add_argument(
        "--openapi", action="append", metavar="FILE", help="serve this OpenAPI document (repeatable)"
    )
    group.add_argument("--kind", choices=("rest", "http"), help="API kind (default: detected per document)")
    group.add_argument("--stage", help="stage to deploy to (default: prod; $default for HTTP APIs)")
    group.add_argument(
        "--function",
        action="append",
        metavar="NAME=module:callable",
        help="bind a Lambda function name used in the documents' URIs to a Python handler",
    )
    group.add_argument(
        "--stage-variable", action="append", metavar="KEY=VALUE", help="a stage variable (repeatable)"
    )
    group.add_argument("--strict", action="store_true", help="refuse what cannot apply instead of warning")


def openapi_config(args: argparse.Namespace, base: Any) -> tuple[Any, list[str]]:
    """The config ``base`` (a GatewayConfig or None) plus the imported documents, and the notes
    to print (warnings, unbound functions). Raises ConfigError with every problem."""
    from fastgw.config.load import decode_config
    from fastgw.openapi import OpenApiImportError, import_document

    functions = {name: {"handler": handler} for name, handler in _pairs(args.function, "--function").items()}
    variables = _pairs(getattr(args, "stage_variable", None), "--stage-variable")
    doc: dict[str, Any] = msgspec.to_builtins(base) if base is not None else {}
    doc.setdefault("apis", [])
    doc["functions"] = {**doc.get("functions", {}), **functions}
    notes: list[str] = []
    for path in args.openapi:
        try:
            result = import_document(
                Path(path),
                kind=args.kind,
                strict=args.strict,
                stage=args.stage,
                stage_variables=variables or None,
            )
        except OpenApiImportError as ex:
            raise _issues(ex, path) from None
        except OSError as ex:
            raise ConfigError([ConfigIssue("$", f"cannot read {path}: {ex.strerror}")], path) from None
        for w in result.warnings:
            notes.append(f"{path}: warning: {w.path}: {w.message}")
        unbound = [f for f in result.functions if f not in doc["functions"]]
        if unbound:
            raise ConfigError(
                [
                    ConfigIssue(
                        "$",
                        f"Lambda function {name!r} is used by the document: bind it with "
                        f"--function {name}=module:callable",
                    )
                    for name in unbound
                ],
                path,
            )
        doc["apis"].append(result.api)
    return decode_config(doc, " + ".join(args.openapi)), notes


def describe(config: Any, listen: str) -> list[str]:
    """One line per served API: kind, id, stages and how to reach it."""
    lines = []
    for api in config.apis:
        from fastgw.deployments import api_id_of

        api_id = api_id_of(api)
        for stage in api.stages:
            prefix = "" if stage.name == "$default" else f"/{stage.name}"
            lines.append(
                f"fastgw: {api.kind} API {api.name!r} id {api_id}: http://{listen}{prefix}/ "
                f"(Host: {api_id}.execute-api.local)"
            )
    return lines


# ---------------------------------------------------------------------- fastgw import
def cmd_import(args: argparse.Namespace) -> int:
    import yaml

    from fastgw.cli.main import _print_issues
    from fastgw.config.load import decode_config, load_config_file, parse_document
    from fastgw.openapi import OpenApiImportError, import_document

    doc: dict[str, Any] = {}
    if args.config:
        try:
            doc = parse_document(Path(args.config).read_bytes(), args.config) or {}
            load_config_file(args.config)
        except ConfigError as ex:
            _print_issues(ex)
            return 2
        except OSError as ex:
            print(f"fastgw import: cannot read {args.config}: {ex.strerror}", file=sys.stderr)
            return 2
    apis: list[dict[str, Any]] = list(doc.get("apis") or [])
    try:
        from fastgw.openapi import load_document

        source = load_document(Path(args.file))
        title = args.name or (source.get("info") or {}).get("title")
        index = next(
            (i for i, a in enumerate(apis) if a.get("name") == title or (args.id and a.get("id") == args.id)),
            None,
        )
        base = apis[index] if index is not None else None
        if args.mode == "merge" and base is None:
            print(f"fastgw import: --mode merge: no API {title!r} in the config", file=sys.stderr)
            return 2
        result = import_document(
            source,
            kind=args.kind,
            strict=args.strict,
            mode=args.mode,
            base=base,
            name=args.name,
            api_id=args.id,
            stage=args.stage,
        )
    except OpenApiImportError as ex:
        _print_issues(_issues(ex, args.file))
        return 2
    except OSError as ex:
        print(f"fastgw import: cannot read {args.file}: {ex.strerror}", file=sys.stderr)
        return 2
    for w in result.warnings:
        print(f"{args.file}: warning: {w.path}: {w.message}", file=sys.stderr)
    if index is None:
        apis.append(result.api)
    else:
        apis[index] = result.api
    doc["apis"] = apis
    if result.functions:
        missing = [f for f in result.functions if f not in (doc.get("functions") or {})]
        if missing:
            print(
                "fastgw import: bind these Lambda functions in `functions` before serving: "
                + ", ".join(missing),
                file=sys.stderr,
            )
    else:
        try:
            decode_config(doc, args.file)
        except ConfigError as ex:
            _print_issues(ex)
            return 2
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if args.output:
        Path(args.output).write_text(text)
        print(
            f"fastgw import: wrote {args.output} (API {result.api['name']!r}, id {result.api['id']})",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return 0


def add_import_command(sub: Any) -> None:
    p = sub.add_parser("import", help="import an OpenAPI document (AWS export) into a config file")
    p.add_argument("file", help="OpenAPI 3.0 / Swagger 2.0 document, JSON or YAML")
    p.add_argument("-c", "--config", help="the config to import into (default: a new one)")
    p.add_argument("-o", "--output", help="write the resulting config here (default: stdout)")
    p.add_argument("--mode", choices=("overwrite", "merge"), default="overwrite", help="AWS's import modes")
    p.add_argument("--kind", choices=("rest", "http"), help="API kind (default: detected)")
    p.add_argument("--name", help="API name (default: info.title)")
    p.add_argument("--id", help="API id (default: the existing API's, else derived from the name)")
    p.add_argument("--stage", help="stage of a new API (default: prod; $default for HTTP APIs)")
    p.add_argument("--strict", action="store_true", help="refuse what cannot apply instead of warning")
    p.set_defaults(func=cmd_import)
