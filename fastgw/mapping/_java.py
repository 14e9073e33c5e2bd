"""What Java gives a Velocity template for free: ``toString()`` and the methods of String, List, Map.

AWS renders mapping templates with Apache Velocity on the JVM, so ``$s.toLowerCase()``,
``$list.size()`` or ``$map.keySet()`` are Java methods and ``$value`` prints Java's
``toString()``. This module gives Python values the same surface:

* ``java_str(value)``: ``toString()``. A Java map prints ``{a=1, b=x}`` and a list built by the
  template prints ``[1, x]`` (``JavaList``), while a JSON array from the payload
  (``$input.path``, ``$util.parseJson``: a plain ``list``) prints as compact JSON
  (``[{"c":5}]``), because AWS's JSONPath returns json-smart arrays, whose ``toString()`` is
  JSON. Doubles print as Java does (``1.0E20``, ``249.99``), booleans ``true`` / ``false``, null
  ``null``.
* ``METHODS``: per type, the methods a template may call, as ``name -> function(self, *args)``.
  Nothing else is reachable: a template cannot call Python methods (APPSEC: no ``__class__``,
  no ``str.format``, no attribute walk to module globals), see ``fastgw.mapping._engine``.
* Java regular expressions (``replaceAll``, ``matches``, ``split``) through ``re``, with Java's
  replacement syntax (``$1``, ``${name}``, ``\\$``) and split rules (trailing empty strings
  removed).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["METHODS", "JavaList", "MapEntry", "java_str", "method_table"]

#: Longest string a template may build (concatenation, interpolation, replace): 10 MiB, the
#: AWS payload limit. APPSEC: a loop doubling a string would otherwise exhaust memory.
MAX_STRING = 10 * 1024 * 1024


class JavaList(list):  # type: ignore[type-arg]
    """A list made by the template (``[1, 2]``, ``[1..5]``, ``keySet()``, ``split()``): prints as Java."""

    __slots__ = ()

    def __str__(self) -> str:
        return java_str(self)


class MapEntry:
    """An element of ``$map.entrySet()``: ``$e.key`` / ``$e.value`` / ``getKey()`` / ``getValue()``."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key = key
        self.value = value

    def __str__(self) -> str:
        return f"{java_str(self.key)}={_elem(self.value)}"


class StringTooLong(ValueError):
    pass


def checked(s: str) -> str:
    if len(s) > MAX_STRING:
        raise StringTooLong(f"a string longer than {MAX_STRING} characters was built")
    return s


# ----------------------------------------------------------------------------- toString()
_INF = float("inf")


def java_double(f: float) -> str:
    """Java's ``Double.toString``: plain between 1e-3 and 1e7, else ``d.dddE±n``."""
    a = abs(f)
    if 1e-3 <= a < 1e7:
        return repr(f)
    if f != f:
        return "NaN"
    if a == _INF:
        return "Infinity" if f > 0 else "-Infinity"
    if f == 0:
        return "-0.0" if repr(f)[0] == "-" else "0.0"
    d = Decimal(repr(a))
    digits = d.as_tuple().digits
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    text = f"{ds[0]}.{ds[1:] or '0'}E{d.adjusted()}"
    return "-" + text if f < 0 else text


def _json_default(o: Any) -> Any:
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, (tuple, range, set, frozenset)):
        return list(o)
    return java_str(o)


_JSON_OPTS = orjson.OPT_NON_STR_KEYS


def to_json(value: Any) -> str:
    """Compact JSON, as json-smart writes it for ``$input.json`` and JSON arrays' ``toString()``."""
    try:
        return orjson.dumps(value, default=_json_default, option=_JSON_OPTS).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits (a payload may have them): the standard encoder.
        import json

        return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def _elem(value: Any) -> str:
    """An element of a Java collection's ``toString()``."""
    if type(value) is str:
        return value
    return java_str(value)


def java_str(value: Any) -> str:
    """``String.valueOf(value)`` for what a template can hold."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        return java_double(value)
    if t is list:
        return to_json(value)  # a JSON array (json-smart's JSONArray.toString())
    if t is dict or isinstance(value, Mapping):
        return "{" + ", ".join(f"{_elem(k)}={_elem(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (JavaList, tuple, range, set, frozenset)) or t is type({}.keys()):
        return "[" + ", ".join(_elem(v) for v in value) + "]"
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return to_json(value)
    return str(value)


# ----------------------------------------------------------------------------- regexes
_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


@functools.lru_cache(maxsize=256)
def java_regex(pattern: str) -> re.Pattern[str]:
    """A Java regex as a Python one: ``(?<name>`` becomes ``(?P<name>``; the rest is shared."""
    if type(pattern) is not str:
        raise TypeError(f"a regex must be a string, got {java_str(pattern)!r}")
    return re.compile(_NAMED_GROUP.sub("(?P<", pattern))


@functools.lru_cache(maxsize=256)
def _replacement(repl: str) -> Callable[[re.Match[str]], str]:
    """Java's ``Matcher.appendReplacement`` syntax: ``$n``, ``${name}``, ``\\x`` for a literal x."""
    parts: list[str | int] = []
    lit: list[str] = []
    i = 0
    n = len(repl)
    while i < n:
        c = repl[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("character to be escaped is missing")
            lit.append(repl[i + 1])
            i += 2
        elif c == "$":
            if i + 1 < n and repl[i + 1] == "{":
                end = repl.find("}", i + 2)
                if end < 0:
                    raise ValueError("named capturing group is missing trailing '}'")
                parts.append("".join(lit))
                lit = []
                parts.append(repl[i + 2 : end])  # a group name
                parts.append("")  # keeps names (str) apart from literals in the odd/even layout
                i = end + 1
                continue
            j = i + 1
            while j < n and repl[j].isdigit():
                j += 1
            if j == i + 1:
                raise ValueError("Illegal group reference")
            parts.append("".join(lit))
            lit = []
            parts.append(int(repl[i + 1 : j]))
            parts.append("")
            i = j
            continue
        else:
            lit.append(c)
            i += 1
    parts.append("".join(lit))
    if len(parts) == 1:
        text = parts[0]
        return lambda m: text  # type: ignore[return-value]
    # parts: literal, group, "", literal, group, "", ..., literal
    layout = tuple(parts)

    def expand(m: re.Match[str]) -> str:
        out: list[str] = []
        for k, part in enumerate(layout):
            if k % 3 == 1:
                g = m.group(part)
                if g is not None:
                    out.append(g)
            else:
                out.append(part)  # type: ignore[arg-type]
        return "".join(out)

    return expand


def java_split(s: str, regex: Any, limit: int = 0) -> JavaList:
    """``String.split(regex, limit)``: no capture groups in the result, trailing empties dropped."""
    pattern = java_regex(_s(regex))
    out = JavaList()
    pos = 0
    matched = False
    for m in pattern.finditer(s):
        if 0 < limit <= len(out) + 1:
            break
        if m.end() == 0:  # a zero-width match at the start gives no leading empty string
            continue
        matched = True
        out.append(s[pos : m.start()])
        pos = m.end()
    if not matched:
        return JavaList([s])
    out.append(s[pos:])
    if limit == 0:
        while out and out[-1] == "":
            out.pop()
    return out


def _s(value: Any) -> str:
    return value if type(value) is str else java_str(value)


# ----------------------------------------------------------------------------- methods
def _index_of(self: str, sub: Any, start: int = 0) -> int:
    return self.find(_s(sub), max(start, 0))


def _last_index_of(self: str, sub: Any, start: int | None = None) -> int:
    if start is None:
        return self.rfind(_s(sub))
    return self.rfind(_s(sub), 0, start + len(_s(sub)))


def _substring(self: str, start: int, end: int | None = None) -> str:
    n = len(self)
    stop = n if end is None else end
    if not (0 <= start <= stop <= n):
        raise IndexError(f"begin {start}, end {stop}, length {n}")
    return self[start:stop]


def _char_at(self: str, i: int) -> str:
    if not 0 <= i < len(self):
        raise IndexError(f"index {i}, length {len(self)}")
    return self[i]


_TRIM = "".join(chr(i) for i in range(33))


def _starts_with(self: str, prefix: Any, offset: int = 0) -> bool:
    return self.startswith(_s(prefix), offset)


STRING_METHODS: dict[str, Callable[..., Any]] = {
    "length": len,
    "isEmpty": lambda self: len(self) == 0,
    "isBlank": lambda self: not self.strip(),
    "toLowerCase": lambda self, *locale: self.lower(),
    "toUpperCase": lambda self, *locale: self.upper(),
    "trim": lambda self: self.strip(_TRIM),
    "strip": lambda self: self.strip(),
    "contains": lambda self, sub: _s(sub) in self,
    "startsWith": _starts_with,
    "endsWith": lambda self, suffix: self.endswith(_s(suffix)),
    "equals": lambda self, other: isinstance(other, str) and self == other,
    "equalsIgnoreCase": lambda self, other: isinstance(other, str) and self.lower() == other.lower(),
    "indexOf": _index_of,
    "lastIndexOf": _last_index_of,
    "substring": _substring,
    "charAt": _char_at,
    "concat": lambda self, other: checked(self + _s(other)),
    "replace": lambda self, old, new: checked(self.replace(_s(old), _s(new))),
    "replaceAll": lambda self, regex, repl: checked(java_regex(_s(regex)).sub(_replacement(_s(repl)), self)),
    "replaceFirst": lambda self, regex, repl: checked(
        java_regex(_s(regex)).sub(_replacement(_s(repl)), self, count=1)
    ),
    "matches": lambda self, regex: java_regex(_s(regex)).fullmatch(self) is not None,
    "split": java_split,
    "toString": lambda self: self,
    "compareTo": lambda self, other: (self > _s(other)) - (self < _s(other)),
}


def _list_get(self: list[Any], i: int) -> Any:
    if type(i) is not int or not 0 <= i < len(self):
        raise IndexError(f"index {i}, size {len(self)}")
    return self[i]


def _list_set(self: list[Any], i: int, value: Any) -> Any:
    old = _list_get(self, i)
    self[i] = value
    return old


def _list_add(self: list[Any], *args: Any) -> Any:
    if len(args) == 2:
        self.insert(args[0], args[1])
        return None
    self.append(args[0])
    return True


def _list_remove(self: list[Any], item: Any) -> Any:
    if type(item) is int:  # remove(int index)
        _list_get(self, item)
        return self.pop(item)
    try:
        self.remove(item)
    except ValueError:
        return False
    return True


def _list_index_of(self: list[Any], item: Any) -> int:
    try:
        return self.index(item)
    except ValueError:
        return -1


def _sub_list(self: list[Any], start: int, end: int) -> JavaList:
    if not 0 <= start <= end <= len(self):
        raise IndexError(f"fromIndex {start}, toIndex {end}, size {len(self)}")
    return JavaList(self[start:end])


LIST_METHODS: dict[str, Callable[..., Any]] = {
    "size": len,
    "count": len,
    "isEmpty": lambda self: len(self) == 0,
    "get": _list_get,
    "contains": lambda self, item: item in self,
    "indexOf": _list_index_of,
    "add": _list_add,
    "addAll": lambda self, items: self.extend(items) or True,
    "set": _list_set,
    "remove": _list_remove,
    "clear": lambda self: self.clear(),
    "subList": _sub_list,
    "toString": java_str,
    "equals": lambda self, other: isinstance(other, (list, tuple)) and list(self) == list(other),
}

# Read-only sequences (a Python range from [1..n] is turned into a JavaList; tuples may come
# from the caller's context).
SEQUENCE_METHODS: dict[str, Callable[..., Any]] = {
    name: fn for name, fn in LIST_METHODS.items() if name not in ("add", "addAll", "set", "remove", "clear")
}


def _put(self: Any, key: Any, value: Any) -> Any:
    old = self.get(key)
    self[key] = value
    return old


def _put_all(self: Any, other: Any) -> None:
    for k, v in other.items():
        self[k] = v


MAP_METHODS: dict[str, Callable[..., Any]] = {
    "get": lambda self, key: self.get(key),
    "getOrDefault": lambda self, key, default: self.get(key, default),
    "containsKey": lambda self, key: key in self,
    "containsValue": lambda self, value: value in self.values(),
    "keySet": lambda self: JavaList(self.keys()),
    "values": lambda self: JavaList(self.values()),
    "entrySet": lambda self: JavaList(MapEntry(k, v) for k, v in self.items()),
    "size": len,
    "isEmpty": lambda self: len(self) == 0,
    "put": _put,
    "putAll": _put_all,
    "remove": lambda self, key: self.pop(key, None),
    "toString": java_str,
    "equals": lambda self, other: isinstance(other, Mapping) and dict(self) == dict(other),
}

ENTRY_METHODS: dict[str, Callable[..., Any]] = {
    "getKey": lambda self: self.key,
    "getValue": lambda self: self.value,
    "toString": lambda self: str(self),
}

OBJECT_METHODS: dict[str, Callable[..., Any]] = {
    "toString": java_str,
    "equals": lambda self, other: type(self) is type(other) and self == other,
}

NUMBER_METHODS: dict[str, Callable[..., Any]] = {
    **OBJECT_METHODS,
    "intValue": lambda self: int(self),
    "longValue": lambda self: int(self),
    "doubleValue": lambda self: float(self),
    "floatValue": lambda self: float(self),
}

#: Methods by exact type; ``method_table`` resolves (and caches) subclasses and other mappings.
METHODS: dict[type, dict[str, Callable[..., Any]]] = {
    str: STRING_METHODS,
    list: LIST_METHODS,
    JavaList: LIST_METHODS,
    tuple: SEQUENCE_METHODS,
    range: SEQUENCE_METHODS,
    dict: MAP_METHODS,
    MapEntry: ENTRY_METHODS,
    int: NUMBER_METHODS,
    float: NUMBER_METHODS,
    bool: OBJECT_METHODS,
    type({}.keys()): SEQUENCE_METHODS,
    type({}.values()): SEQUENCE_METHODS,
}


def method_table(t: type) -> dict[str, Callable[..., Any]]:
    """The methods of values of type ``t`` (a subclass gets its nearest registered base's)."""
    table = METHODS.get(t)
    if table is None:
        for base in t.__mro__[1:]:
            table = METHODS.get(base)
            if table is not None:
                break
        if table is None or table is OBJECT_METHODS:
            table = MAP_METHODS if issubclass(t, Mapping) else OBJECT_METHODS
        if len(METHODS) < 512:
            METHODS[t] = table
    return table
