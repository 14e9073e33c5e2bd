"""Reading an OpenAPI document for the importer: problems with JSON paths, typed reads, local
``$ref`` resolution with loop detection, the parser, and the check for stray extensions.

Every read goes through a ``Reader``, which records a problem at the JSON path of the node it
could not use and returns ``None``, so that the importer goes on and reports every problem of a
document in one run (as ``fastgw.config.load`` does for config files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import orjson
import yaml

#: AWS's import limit (API Gateway refuses larger definitions).
MAX_DOCUMENT_BYTES = 6 * 1024 * 1024
#: Nodes a document may expand to once YAML aliases are followed (an alias "bomb" is refused).
MAX_EXPANDED_NODES = 2_000_000

EXT = "x-amazon-apigateway-"


@dataclass(frozen=True)
class ImportProblem:
    """One problem of an imported document: where (JSON path), what, and how bad."""

    path: str
    message: str
    severity: Literal["warning", "error"]

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class OpenApiImportError(ValueError):
    """A document was refused; ``problems`` holds every error found (not only the first)."""

    def __init__(self, problems: list[ImportProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"OpenAPI import refused: {len(self.problems)} problem(s)\n{lines}")


# ---------------------------------------------------------------------------- JSON paths
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def child(path: str, key: str | int) -> str:
    """The JSON path of ``key`` under ``path``: ``$.a``, ``$.a[0]``, ``$.paths['/pets/{id}']``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(key):
        return f"{path}.{key}"
    quoted = key.replace("\\", "\\\\").replace("'", "\\'")
    return f"{path}['{quoted}']"


def pointer_tokens(ref: str) -> list[str]:
    """The tokens of a local reference '#/a/b~1c' (URI-fragment decoding, then ~1 and ~0)."""
    frag = ref[1:]
    if not frag:
        return []
    return [unquote(t).replace("~1", "/").replace("~0", "~") for t in frag.lstrip("/").split("/")]


def pointer_path(ref: str) -> str:
    path = "$"
    for token in pointer_tokens(ref):
        path = child(path, token)
    return path


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------------------- problems and reads
class Reader:
    """Problems found so far, typed reads that record a problem on a wrong type, and local
    ``$ref`` resolution over ``root``."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.problems: list[ImportProblem] = []
        #: Paths the importer has read (or deliberately skipped): the stray-extension walk
        #: does not look inside them.
        self.claimed: set[str] = set()
        #: Extension keys allowed where they are whose content the walk still inspects
        #: (x-amazon-apigateway-any-method holds an operation).
        self.allowed: set[str] = set()

    # -- recording
    def error(self, path: str, message: str) -> None:
        self.problems.append(ImportProblem(path, message, "error"))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(ImportProblem(path, message, "warning"))

    def claim(self, path: str) -> None:
        self.claimed.add(path)

    def allow(self, path: str) -> None:
        self.allowed.add(path)

    # -- typed reads (None: absent or wrong, a problem recorded for the latter)
    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if isinstance(value, dict):
            return value
        self.error(path, f"expected an object, got {type_name(value)}")
        return None

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str):
            return value
        self.error(path, f"expected a string, got {type_name(value)}")
        return None

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"expected a boolean, got {type_name(value)}")
        return None

    def integer(self, value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int | None:
        """An integer; a string of digits is accepted (AWS documents some integers as strings)."""
        got: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            got = value
        elif isinstance(value, float) and value.is_integer():
            got = int(value)
        elif isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,12}", value.strip()):
            got = int(value)
        if got is None:
            self.error(path, f"expected an integer, got {type_name(value)}")
            return None
        if (lo is not None and got < lo) or (hi is not None and got > hi):
            low = lo if lo is not None else ".."
            high = hi if hi is not None else ".."
            self.error(path, f"{got} is out of range ({low}-{high})")
            return None
        return got

    def str_list(self, value: Any, path: str) -> list[str] | None:
        if not isinstance(value, list):
            self.error(path, f"expected an array of strings, got {type_name(value)}")
            return None
        out = []
        ok = True
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            else:
                self.error(child(path, i), f"expected a string, got {type_name(item)}")
                ok = False
        return out if ok else None

    def str_map(self, value: Any, path: str) -> dict[str, str] | None:
        if not isinstance(value, dict):
            self.error(path, f"expected an object of strings, got {type_name(value)}")
            return None
        out = {}
        ok = True
        for key, item in value.items():
            if isinstance(item, str):
                out[key] = item
            else:
                self.error(child(path, key), f"expected a string, got {type_name(item)}")
                ok = False
        return out if ok else None

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str | None:
        """One of ``allowed`` (case-insensitive, as AWS reads its enums), in ``allowed``'s case."""
        text = self.string(value, path)
        if text is None:
            return None
        for choice in allowed:
            if choice.lower() == text.lower():
                return choice
        self.error(path, f"{text!r} is not one of {', '.join(allowed)}")
        return None

    def fields(self, node: Mapping[str, Any], path: str, allowed: frozenset[str], what: str) -> None:
        """An error for each key of ``node`` that ``what`` does not define (vendor ``x-`` keys
        other than API Gateway's are allowed, as everywhere in OpenAPI)."""
        for key in node:
            if key in allowed:
                continue
            if key.startswith("x-") and not key.startswith(EXT):
                continue
            self.error(child(path, key), f"unknown field {key!r} in {what}")

    # -- references
    def lookup(self, ref: str) -> tuple[bool, Any]:
        node: Any = self.root
        for token in pointer_tokens(ref):
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return False, None
        return True, node

    def deref(self, node: Any, path: str) -> tuple[Any, str]:
        """Follow ``node``'s ``$ref`` chain: (target, its path), or (None, path) after a problem.
        A node without ``$ref`` is returned as is."""
        seen: list[str] = []
        start = path
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            ref_path = child(path, "$ref")
            if not isinstance(ref, str):
                self.error(ref_path, f"$ref must be a string, got {type_name(ref)}")
                return None, path
            if not ref.startswith("#"):
                self.error(
                    ref_path, f"external $ref {ref!r} is not supported (only local '#/...' references)"
                )
                return None, path
            if ref in seen:
                chain = " -> ".join([*seen, ref])
                self.error(child(start, "$ref"), f"$ref loop: {chain}")
                return None, path
            seen.append(ref)
            found, target = self.lookup(ref)
            if not found:
                self.error(ref_path, f"$ref {ref!r} points at nothing in the document")
                return None, path
            node, path = target, pointer_path(ref)
        return node, path


# ---------------------------------------------------------------------------- parsing
class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loading without timestamps: dates stay strings, as in JSON."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_source(source: str | bytes | os.PathLike[str]) -> tuple[bytes | str, str]:
    """The document's text and a name for messages; refuses sources over the limit."""
    if isinstance(source, bytes):
        if len(source) > MAX_DOCUMENT_BYTES:
            raise _too_big(len(source))
        return source, "<bytes>"
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and len(source) < 4096 and os.path.isfile(source)
    ):
        name = os.fspath(source)
        try:
            with open(name, "rb") as f:
                data = f.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as ex:
            raise OpenApiImportError(
                [ImportProblem("$", f"cannot read {name}: {ex.strerror}", "error")]
            ) from None
        if len(data) > MAX_DOCUMENT_BYTES:
            raise _too_big(os.path.getsize(name))
        return data, name
    if not isinstance(source, str):
        raise TypeError(f"expected a path, text or bytes, got {type(source).__name__}")
    # PERF: the UTF-8 length is at most 4 bytes per character; encode only near the limit.
    if (
        len(source) * 4 > MAX_DOCUMENT_BYTES
        and len(source.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES
    ):
        raise _too_big(len(source.encode("utf-8", "surrogatepass")))
    return source, "<text>"


def _too_big(size: int) -> OpenApiImportError:
    return OpenApiImportError(
        [
            ImportProblem(
                "$",
                f"the document is {size} bytes; API Gateway imports at most "
                f"{MAX_DOCUMENT_BYTES} bytes (6 MB)",
                "error",
            )
        ]
    )


def parse_text(text: bytes | str, name: str) -> Any:
    """JSON (fast path) or YAML into plain data."""
    stripped = text.lstrip()
    if stripped[:1] in (b"{", "{", b"[", "["):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # YAML flow style, or broken JSON: YAML says where
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as ex:
        mark = getattr(ex, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(ex, "problem", None) or str(ex)
        raise OpenApiImportError(
            [ImportProblem("$", f"{name} is not valid JSON or YAML{where}: {problem}", "error")]
        ) from None


def normalize(data: Any) -> Any:
    """Plain data with string keys (YAML reads ``200:`` as an int); refuses alias loops and
    alias "bombs" (a document that expands past MAX_EXPANDED_NODES)."""
    memo: dict[int, Any] = {}
    active: set[int] = set()
    count = 0

    def walk(node: Any, path: str) -> Any:
        nonlocal count
        count += 1
        if count > MAX_EXPANDED_NODES:
            raise OpenApiImportError(
                [
                    ImportProblem(
                        "$",
                        f"the document expands to over {MAX_EXPANDED_NODES} nodes (YAML aliases)",
                        "error",
                    )
                ]
            )
        if isinstance(node, (dict, list)):
            key = id(node)
            if key in active:
                raise OpenApiImportError(
                    [ImportProblem(path, "YAML alias loop (a node contains itself)", "error")]
                )
            if key in memo:
                # An alias: the same (already normalised) object; its size still counts.
                count += _size(memo[key])
                return memo[key]
            active.add(key)
            out: Any
            if isinstance(node, dict):
                out = {}
                for k, v in node.items():
                    sk = _key(k)
                    out[sk] = walk(v, child(path, sk))
            else:
                out = [walk(v, child(path, i)) for i, v in enumerate(node)]
            active.discard(key)
            memo[key] = out
            return out
        return node

    sizes: dict[int, int] = {}

    def _size(node: Any) -> int:
        key = id(node)
        got = sizes.get(key)
        if got is None:
            children = node.values() if isinstance(node, dict) else node
            got = 1 + sum(_size(c) if isinstance(c, (dict, list)) else 1 for c in children)
            sizes[key] = got
        return got

    return walk(data, "$")


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def approx_size(doc: Mapping[str, Any]) -> int:
    """The JSON size of an already parsed document (what AWS would receive)."""
    try:
        return len(orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS))
    except TypeError as ex:  # orjson stops at 254 levels of nesting (or a loop)
        raise OpenApiImportError(
            [ImportProblem("$", f"the document cannot be read: {ex}", "error")]
        ) from None


# ---------------------------------------------------------------------------- stray extensions
def walk_extensions(root: Any, claimed: set[str], allowed: set[str]) -> Iterator[tuple[str, str]]:
    """(path, name) of every ``x-amazon-apigateway-*`` key outside the claimed subtrees and not
    in ``allowed``."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, "$")]
    while stack:
        node, path = stack.pop()
        if path in claimed or not isinstance(node, (dict, list)):
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            items = list(node.items())
            for key, value in reversed(items):
                p = child(path, key)
                if key.startswith(EXT) and p not in claimed and p not in allowed:
                    yield p, key
                    continue
                if key.startswith("x-") and not key.startswith(EXT):
                    continue  # another vendor's extension: its content is not ours to read
                stack.append((value, p))
        else:
            for i in range(len(node) - 1, -1, -1):
                stack.append((node[i], child(path, i)))
