"""Read a config file (YAML or JSON) into a validated ``GatewayConfig``.

Type errors are collected field by field so that ``fastgw validate`` can print every bad
field with its JSON path (``$.apis[0].routes[3].integration.uri``), not only the first one
msgspec stops at. Semantic checks (route conflicts, URI templates, references) are made by
``compile.py`` and reported the same way.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import yaml

from fastgw.config.model import GatewayConfig


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where (JSON path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """A config was rejected; ``issues`` holds every problem found."""

    def __init__(self, issues: list[ConfigIssue], source: str = "config") -> None:
        self.issues = issues
        self.source = source
        super().__init__(f"{source}: {len(issues)} error(s)\n" + "\n".join(f"  {i}" for i in issues))


def parse_document(text: str | bytes, source: str = "config") -> Any:
    """Parse YAML (a superset of JSON) into plain Python data."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        raise ConfigError([ConfigIssue("$", f"not valid YAML/JSON ({where}): {ex}")], source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue("$", f"Expected `object`, got `{type(data).__name__}`")], source)
    return data


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _collect(obj: Any, tp: Any, path: str, out: list[ConfigIssue]) -> None:
    """Append an issue for every invalid field under ``obj`` (expected type ``tp``)."""
    try:
        msgspec.convert(obj, tp)
        return
    except msgspec.ValidationError as ex:
        first = str(ex)
    base = _unwrap(tp)
    origin = typing.get_origin(base)
    if isinstance(base, type) and issubclass(base, msgspec.Struct) and isinstance(obj, dict):
        fields = {f.encode_name: f for f in msgspec.structs.fields(base)}
        before = len(out)
        for key in obj:
            if key not in fields:
                out.append(ConfigIssue(f"{path}.{key}", "unknown field"))
        for name, info in fields.items():
            if name in obj:
                _collect(obj[name], info.type, f"{path}.{name}", out)
            elif info.required:
                out.append(ConfigIssue(path, f"missing required field `{name}`"))
        if len(out) > before:
            return
    elif origin is list and isinstance(obj, list):
        (item_tp,) = typing.get_args(base)
        before = len(out)
        for i, item in enumerate(obj):
            _collect(item, item_tp, f"{path}[{i}]", out)
        if len(out) > before:
            return
    elif origin is dict and isinstance(obj, dict):
        _, val_tp = typing.get_args(base)
        before = len(out)
        for key, item in obj.items():
            _collect(item, val_tp, f"{path}.{key}", out)
        if len(out) > before:
            return
    # A leaf (or a union / constraint failing as a whole): msgspec's own message and path.
    msg, _, where = first.partition(" - at `")
    out.append(ConfigIssue(path + where.rstrip("`")[1:] if where else path, msg))


def decode_config(data: Any, source: str = "config") -> GatewayConfig:
    """Validate plain data into a ``GatewayConfig`` or raise ``ConfigError`` with every issue."""
    try:
        return msgspec.convert(data, GatewayConfig)
    except msgspec.ValidationError:
        issues: list[ConfigIssue] = []
        _collect(data, GatewayConfig, "$", issues)
        raise ConfigError(issues or [ConfigIssue("$", "invalid config")], source) from None


def load_config_text(text: str | bytes, source: str = "config") -> GatewayConfig:
    return decode_config(parse_document(text, source), source)


def load_config_file(path: str | Path) -> GatewayConfig:
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as ex:
        raise ConfigError([ConfigIssue("$", f"cannot read {p}: {ex.strerror}")], str(p)) from None
    return expand_openapi(load_config_text(text, str(p)), p.parent, str(p))


def expand_openapi(config: GatewayConfig, folder: Path, source: str = "config") -> GatewayConfig:
    """The config with its ``openapi`` documents imported into ``apis`` (and ``openapi`` emptied,
    so that the result can be encoded and decoded again without importing twice)."""
    if not config.openapi:
        return config
    import logging

    from fastgw.openapi import OpenApiImportError, import_document

    doc = msgspec.to_builtins(config)
    issues: list[ConfigIssue] = []
    for i, src in enumerate(config.openapi):
        path = f"$.openapi[{i}]"
        try:
            result = import_document(
                folder / src.file,
                kind=src.kind,
                strict=src.strict,
                name=src.name,
                api_id=src.id,
                stage=src.stage,
                stage_variables=dict(src.stageVariables) or None,
            )
        except OpenApiImportError as ex:
            issues.extend(ConfigIssue(f"{path} ({src.file}) {p.path}", p.message) for p in ex.problems)
            continue
        except OSError as ex:
            issues.append(ConfigIssue(f"{path}.file", f"cannot read {src.file}: {ex.strerror}"))
            continue
        for w in result.warnings:
            logging.getLogger("fastgw.config").warning(
                "openapi import warning", extra={"document": src.file, "path": w.path, "warning": w.message}
            )
        doc["apis"].append(result.api)
    if issues:
        raise ConfigError(issues, source)
    doc["openapi"] = []
    return decode_config(doc, source)
