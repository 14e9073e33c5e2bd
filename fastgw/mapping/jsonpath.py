"""The JSONPath of ``$input.json(x)`` / ``$input.path(x)``: Jayway JsonPath's dialect, compiled once.

AWS evaluates these expressions with Jayway JsonPath (the developer guide links it). This is a
small evaluator for the part of that dialect mapping templates use, rather than jsonpath-ng:
jsonpath-ng's PLY parser costs hundreds of microseconds per expression and its matches are
wrapped ``DatumInContext`` objects, while a template calls ``$input.path('$.x')`` on every
request; here an expression is compiled once into a tuple of steps (cached by its text) and
evaluated by a short loop over plain dicts and lists. It also keeps Jayway's notion of a
*definite* path, which jsonpath-ng has no equivalent for (see below).

Supported:

* ``$`` (the document), ``$.a.b``, ``$['a']`` / ``$["a"]``, ``$.a[0]``, ``$.a[-1]``;
* wildcards ``$.a[*]``, ``$.a.*``, ``$.a[*].b``; unions ``$['a','b']``, ``$.a[0,2]``; slices
  ``$.a[1:3]``, ``$.a[:2]``, ``$.a[-2:]``, ``$.a[::2]``;
* deep scan ``$..b``, ``$..*``, ``$..[0]``;
* filters ``[?(@.price < 10)]``, ``[?(@.type == 'dog' && @.id != 2)]``, ``[?(@.isbn)]``
  (existence), ``[?(!@.isbn)]``, ``[?(@.name =~ /ab.*/i)]``, with ``== != < <= > >=``,
  ``&&``, ``||``, parentheses, and literals (numbers, quoted strings, true, false, null);
  ``@`` paths are relative to the element, ``$`` paths to the document;
* Jayway's leniency: a path not starting with ``$`` or ``@`` is read as ``$.`` + path.

Results follow Jayway: a *definite* path (only names and single indexes) yields the value, or
``None`` when it does not exist; any other path yields the list of every match (possibly
empty). Not supported (``JsonPathError``): functions (``.length()``, ``.min()``), ``in`` /
``nin`` / ``subsetof`` filter operators, and Jayway's "merge" of a multi-property union on an
object (here ``$['a','b']`` is a list of the values found, as in Goessner's JSONPath).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["JsonPath", "JsonPathError", "compile_path"]


class JsonPathError(ValueError):
    """A JSONPath expression that cannot be compiled."""


_MISSING: Any = object()

# Steps: (kind, arg). Kinds: "key" name, "index" int, "keys" tuple[str], "indexes" tuple[int],
# "slice" (start, stop, step), "wild" None, "deep" step, "filter" predicate.
_Step = tuple[str, Any]
_Pred = Callable[[Any, Any], bool]


class JsonPath:
    """A compiled expression: ``find(document)`` returns the value (definite path) or the matches."""

    __slots__ = ("definite", "steps", "text")

    def __init__(self, text: str, steps: tuple[_Step, ...]) -> None:
        self.text = text
        self.steps = steps
        self.definite = all(kind in ("key", "index") for kind, _ in steps)

    def find(self, document: Any) -> Any:
        if self.definite:
            value = document
            for kind, arg in self.steps:
                if kind == "key":
                    if type(value) is not dict:
                        return None
                    value = value.get(arg, _MISSING)
                    if value is _MISSING:
                        return None
                else:
                    if type(value) is not list:
                        return None
                    n = len(value)
                    i = arg + n if arg < 0 else arg
                    if not 0 <= i < n:
                        return None
                    value = value[i]
            return value
        return _select(self.steps, [document], document)

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"


def _children(value: Any) -> list[Any]:
    if type(value) is dict:
        return list(value.values())
    if type(value) is list:
        return list(value)
    return []


def _descendants(value: Any, out: list[Any]) -> None:
    """``value`` and everything below it, depth first (Jayway's deep-scan order)."""
    out.append(value)
    if type(value) is dict:
        for child in value.values():
            _descendants(child, out)
    elif type(value) is list:
        for child in value:
            _descendants(child, out)


def _apply(kind: str, arg: Any, current: list[Any], root: Any, out: list[Any]) -> None:
    for value in current:
        if kind == "key":
            if type(value) is dict:
                found = value.get(arg, _MISSING)
                if found is not _MISSING:
                    out.append(found)
        elif kind == "wild":
            out.extend(_children(value))
        elif kind == "index" or kind == "indexes":
            if type(value) is list:
                n = len(value)
                for i in (arg,) if kind == "index" else arg:
                    j = i + n if i < 0 else i
                    if 0 <= j < n:
                        out.append(value[j])
        elif kind == "keys":
            if type(value) is dict:
                for name in arg:
                    found = value.get(name, _MISSING)
                    if found is not _MISSING:
                        out.append(found)
        elif kind == "slice":
            if type(value) is list:
                start, stop, step = arg
                out.extend(value[start:stop:step])
        elif kind == "filter":
            if type(value) is list:
                out.extend(item for item in value if arg(item, root))
            elif type(value) is dict and arg(value, root):
                out.append(value)
        elif kind == "deep":
            scanned: list[Any] = []
            _descendants(value, scanned)
            sub_kind, sub_arg = arg
            if sub_kind == "wild":
                out.extend(scanned[1:])
            else:
                _apply(sub_kind, sub_arg, scanned, root, out)


def _select(steps: tuple[_Step, ...], current: list[Any], root: Any) -> list[Any]:
    for kind, arg in steps:
        out: list[Any] = []
        _apply(kind, arg, current, root, out)
        current = out
    return current


# ------------------------------------------------------------------------------ compiling
_cache: dict[str, JsonPath] = {}
_CACHE_MAX = 1024


def compile_path(text: str) -> JsonPath:
    """The compiled expression ``text`` (cached); ``JsonPathError`` if it is not valid."""
    path = _cache.get(text)
    if path is None:
        if not isinstance(text, str):
            raise JsonPathError(f"a JSONPath must be a string, got {type(text).__name__}")
        source = text.strip()
        if not source.startswith(("$", "@")):
            source = "$" + source if source.startswith("[") else "$." + source
        parser = _Parser(source, text)
        parser.pos = 1  # past the root sign
        path = JsonPath(text, parser.steps())
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[text] = path
    return path


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INT = re.compile(r"\s*(-?\d+)\s*")
_NAME_END = re.compile(r"[.\[\s()=!<>&|]")


class _Parser:
    __slots__ = ("pos", "src", "text")

    def __init__(self, src: str, text: str) -> None:
        self.src = src
        self.text = text
        self.pos = 0

    def error(self, what: str) -> JsonPathError:
        return JsonPathError(f"invalid JSONPath {self.text!r}: {what} at character {self.pos + 1}")

    def peek(self, s: str) -> bool:
        return self.src.startswith(s, self.pos)

    def skip_ws(self) -> None:
        src = self.src
        while self.pos < len(src) and src[self.pos] in " \t\r\n":
            self.pos += 1

    def steps(self, stop: Callable[[], bool] | None = None) -> tuple[_Step, ...]:
        """Steps until the end of the source (or until ``stop()`` is true, inside a filter)."""
        steps: list[_Step] = []
        src = self.src
        while self.pos < len(src):
            if stop is not None and stop():
                break
            if self.peek(".."):
                self.pos += 2
                if self.peek("["):
                    steps.append(("deep", self.bracket()))
                else:
                    steps.append(("deep", self.dot_member()))
            elif self.peek("."):
                self.pos += 1
                steps.append(self.dot_member())
            elif self.peek("["):
                steps.append(self.bracket())
            else:
                if stop is not None:
                    break
                raise self.error(f"unexpected {src[self.pos]!r}")
        return tuple(steps)

    def dot_member(self) -> _Step:
        if self.peek("*"):
            self.pos += 1
            return ("wild", None)
        m = _NAME_END.search(self.src, self.pos)
        end = m.start() if m else len(self.src)
        name = self.src[self.pos : end]
        if not name:
            raise self.error("a property name is missing")
        if self.src.startswith("(", end):
            raise self.error(f"JSONPath functions ({name}()) are not supported")
        self.pos = end
        return ("key", name)

    def bracket(self) -> _Step:
        src = self.src
        self.pos += 1  # '['
        self.skip_ws()
        if self.peek("*"):
            self.pos += 1
            step: _Step = ("wild", None)
        elif self.peek("?"):
            self.pos += 1
            self.skip_ws()
            if not self.peek("("):
                raise self.error("'(' expected after '?'")
            self.pos += 1
            pred = self.or_expr()
            self.skip_ws()
            if not self.peek(")"):
                raise self.error("')' expected to close the filter")
            self.pos += 1
            step = ("filter", pred)
        elif self.peek("'") or self.peek('"'):
            names = [self.string()]
            self.skip_ws()
            while self.peek(","):
                self.pos += 1
                self.skip_ws()
                names.append(self.string())
                self.skip_ws()
            step = ("key", names[0]) if len(names) == 1 else ("keys", tuple(names))
        else:
            end = src.find("]", self.pos)
            if end < 0:
                raise self.error("']' is missing")
            inner = src[self.pos : end]
            if ":" in inner:
                parts = inner.split(":")
                if len(parts) > 3:
                    raise self.error(f"invalid slice [{inner}]")
                try:
                    bounds = [int(p) if p.strip() else None for p in parts]
                except ValueError:
                    raise self.error(f"invalid slice [{inner}]") from None
                while len(bounds) < 3:
                    bounds.append(None)
                if bounds[2] == 0:
                    raise self.error("a slice step cannot be 0")
                step = ("slice", tuple(bounds))
            else:
                indexes = []
                for part in inner.split(","):
                    m = _INT.fullmatch(part)
                    if m is None:
                        raise self.error(f"invalid index [{inner}]")
                    indexes.append(int(m.group(1)))
                step = ("index", indexes[0]) if len(indexes) == 1 else ("indexes", tuple(indexes))
            self.pos = end
        self.skip_ws()
        if not self.peek("]"):
            raise self.error("']' expected")
        self.pos += 1
        return step

    def string(self) -> str:
        quote = self.src[self.pos]
        out: list[str] = []
        i = self.pos + 1
        src = self.src
        while i < len(src):
            c = src[i]
            if c == "\\" and i + 1 < len(src):
                out.append(src[i + 1])
                i += 2
                continue
            if c == quote:
                self.pos = i + 1
                return "".join(out)
            out.append(c)
            i += 1
        raise self.error("unterminated string")

    # --------------------------------------------------------------------- filter expressions
    def or_expr(self) -> _Pred:
        left = self.and_expr()
        self.skip_ws()
        while self.peek("||"):
            self.pos += 2
            right = self.and_expr()
            left = _or(left, right)
            self.skip_ws()
        return left

    def and_expr(self) -> _Pred:
        left = self.unary()
        self.skip_ws()
        while self.peek("&&"):
            self.pos += 2
            right = self.unary()
            left = _and(left, right)
            self.skip_ws()
        return left

    def unary(self) -> _Pred:
        self.skip_ws()
        if self.peek("!") and not self.peek("!="):
            self.pos += 1
            inner = self.unary()
            return lambda item, root: not inner(item, root)
        if self.peek("("):
            self.pos += 1
            inner = self.or_expr()
            self.skip_ws()
            if not self.peek(")"):
                raise self.error("')' expected")
            self.pos += 1
            return inner
        left = self.operand()
        self.skip_ws()
        for op in ("==", "!=", "<=", ">=", "=~", "<", ">"):
            if self.peek(op):
                self.pos += len(op)
                self.skip_ws()
                if op == "=~":
                    return _regex_test(left, self.regex())
                return _compare(left, op, self.operand())
        # A bare operand: an existence test for a path, the truth of a literal otherwise.
        return lambda item, root: _truthy(left(item, root))

    def operand(self) -> Callable[[Any, Any], Any]:
        self.skip_ws()
        src = self.src
        if self.peek("@") or self.peek("$"):
            relative = src[self.pos] == "@"
            self.pos += 1
            steps = self.steps(stop=lambda: src[self.pos] in " \t)=!<>&|")
            path = JsonPath(src, steps)

            def value(item: Any, root: Any) -> Any:
                base = item if relative else root
                if path.definite:
                    found = base
                    for kind, arg in steps:
                        if kind == "key":
                            found = found.get(arg, _MISSING) if type(found) is dict else _MISSING
                        elif type(found) is list and -len(found) <= arg < len(found):
                            found = found[arg]
                        else:
                            found = _MISSING
                        if found is _MISSING:
                            return _MISSING
                    return found
                return _select(steps, [base], root)

            return value
        if self.peek("'") or self.peek('"'):
            return _constant(self.string())
        for word, literal in (("true", True), ("false", False), ("null", None)):
            if self.peek(word):
                self.pos += len(word)
                return _constant(literal)
        m = _NUMBER.match(src, self.pos)
        if m:
            self.pos = m.end()
            number: float | int = float(m.group()) if any(c in m.group() for c in ".eE") else int(m.group())
            return _constant(number)
        raise self.error("a value is expected in the filter")

    def regex(self) -> re.Pattern[str]:
        if not self.peek("/"):
            raise self.error("'/regex/' expected after =~")
        end = self.pos + 1
        src = self.src
        while end < len(src) and src[end] != "/":
            end += 2 if src[end] == "\\" else 1
        if end >= len(src):
            raise self.error("unterminated regex")
        body = src[self.pos + 1 : end]
        self.pos = end + 1
        flags = 0
        while self.pos < len(src) and src[self.pos] in "imsx":
            flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}[src[self.pos]]
            self.pos += 1
        try:
            return re.compile(body, flags)
        except re.error as ex:
            raise self.error(f"invalid regex /{body}/: {ex}") from None


def _constant(value: Any) -> Callable[[Any, Any], Any]:
    return lambda item, root: value


def _or(a: _Pred, b: _Pred) -> _Pred:
    return lambda item, root: a(item, root) or b(item, root)


def _and(a: _Pred, b: _Pred) -> _Pred:
    return lambda item, root: a(item, root) and b(item, root)


def _truthy(value: Any) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, list) and not isinstance(value, bool):
        return True  # an indefinite path: matched (Jayway: exists)
    return value is not False


def _is_number(v: Any) -> bool:
    return (type(v) is int or type(v) is float) and v is not True and v is not False


def _compare(left: Callable[[Any, Any], Any], op: str, right: Callable[[Any, Any], Any]) -> _Pred:
    def test(item: Any, root: Any) -> bool:
        a = left(item, root)
        b = right(item, root)
        if a is _MISSING or b is _MISSING:
            return op == "!=" and not (a is _MISSING and b is _MISSING)
        if op == "==":
            return _equal(a, b)
        if op == "!=":
            return not _equal(a, b)
        if _is_number(a) and _is_number(b):
            pass
        elif not (type(a) is str and type(b) is str):
            return False
        if op == "<":
            return a < b  # type: ignore[no-any-return]
        if op == "<=":
            return a <= b  # type: ignore[no-any-return]
        if op == ">":
            return a > b  # type: ignore[no-any-return]
        return a >= b  # type: ignore[no-any-return]

    return test


def _equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _regex_test(left: Callable[[Any, Any], Any], pattern: re.Pattern[str]) -> _Pred:
    def test(item: Any, root: Any) -> bool:
        value = left(item, root)
        return type(value) is str and pattern.fullmatch(value) is not None

    return test
