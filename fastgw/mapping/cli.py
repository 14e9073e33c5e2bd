"""``fastgw render-template``: render a mapping template offline, against a Lambda proxy event.

::

    fastgw render-template TEMPLATE --request request.json [--context context.json]
                           [--stage-variable NAME=VALUE ...] [--json]

``request.json`` is a Lambda proxy event, payload format 1.0 (what a REST API sends to a Lambda
proxy integration: ``body``, ``isBase64Encoded``, ``headers`` / ``multiValueHeaders``,
``queryStringParameters`` / ``multiValueQueryStringParameters``, ``pathParameters``,
``stageVariables``, ``requestContext``); it gives ``$input``, and ``$context`` from its
``requestContext``. ``context.json`` (an object) is merged into that ``$context``, nested
objects key by key (``{"identity": {"sourceIp": "..."}}`` changes only the source IP);
``--stage-variable`` sets or replaces stage variables.

The rendered body is written to stdout as it is (no newline added). The overrides the template
set (``$context.requestOverride`` / ``$context.responseOverride``) go to stderr, one
``requestOverride: {...}`` / ``responseOverride: {...}`` JSON line each, only when set. With
``--json``, stdout is instead one JSON object: ``{"body", "requestOverride",
"responseOverride"}``.

Exit status: 0 rendered; 1 the template does not parse or fails (the message has the line and
column); 2 a file cannot be read or is not what is expected. No traceback either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "fastgw render-template"


class _InputError(Exception):
    pass


def add_render_template_command(sub: Any) -> None:
    """Declare ``render-template`` on the ``fastgw`` command's subparsers."""
    p = sub.add_parser(
        "render-template",
        help="render a VTL mapping template offline against a Lambda proxy event (request.json)",
        description="Render an API Gateway mapping template (VTL) as fastgw would, offline.",
    )
    p.add_argument("template", help="the template file")
    p.add_argument(
        "--request",
        required=True,
        metavar="REQUEST_JSON",
        help="a Lambda proxy event (payload 1.0): $input, and $context from its requestContext",
    )
    p.add_argument(
        "--context", metavar="CONTEXT_JSON", help="a JSON object merged into $context (nested objects merged)"
    )
    p.add_argument(
        "--stage-variable",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a stage variable (repeatable); overrides the event's stageVariables",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"body", "requestOverride", "responseOverride"} as JSON on stdout',
    )
    p.set_defaults(func=cmd_render_template)


def _read_json(path: str, what: str) -> Any:
    import orjson

    try:
        data = Path(path).read_bytes()
    except OSError as ex:
        raise _InputError(f"cannot read {what} {path}: {ex.strerror}") from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as ex:
        raise _InputError(f"{what} {path} is not JSON: {ex}") from None


def cmd_render_template(args: argparse.Namespace) -> int:
    import orjson

    from fastgw.mapping.vtl import MappingTemplate, TemplateError, deep_merge, input_from_event

    try:
        try:
            source = Path(args.template).read_text(encoding="utf-8")
        except OSError as ex:
            raise _InputError(f"cannot read template {args.template}: {ex.strerror}") from None
        except UnicodeDecodeError:
            raise _InputError(f"template {args.template} is not UTF-8 text") from None
        event = _read_json(args.request, "request")
        try:
            inp, context, stage_variables = input_from_event(event)
        except ValueError as ex:
            raise _InputError(f"request {args.request}: {ex}") from None
        if args.context:
            extra = _read_json(args.context, "context")
            if not isinstance(extra, dict):
                raise _InputError(f"context {args.context} must be a JSON object")
            deep_merge(context, extra)
        for item in args.stage_variable:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise _InputError(f"--stage-variable {item!r}: expected NAME=VALUE")
            stage_variables[name] = value
    except _InputError as ex:
        print(f"{PROG}: {ex}", file=sys.stderr)
        return 2

    try:
        rendered = MappingTemplate(source, name=args.template).render(inp, context, stage_variables)
    except TemplateError as ex:
        print(f"{PROG}: {ex}", file=sys.stderr)
        return 1

    req = rendered.request_override
    resp = rendered.response_override
    if args.json:
        doc = {"body": rendered.body, "requestOverride": req.to_dict(), "responseOverride": resp.to_dict()}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    sys.stdout.write(rendered.body)
    sys.stdout.flush()
    if req:
        print(f"requestOverride: {orjson.dumps(req.to_dict()).decode()}", file=sys.stderr)
    if resp:
        print(f"responseOverride: {orjson.dumps(resp.to_dict()).decode()}", file=sys.stderr)
    return 0
