"""Templates compiled to Python: the parse tree turned, once, into the source of one function.

``_engine`` evaluates a template by walking airspeed's node tree, a few Python calls per node
and per request. ``compile_template`` instead generates the source of one Python function from
that tree, the way ``fastgw.telemetry.access`` does for access-log formats (and Falcon for its
router), and runs it with ``exec``. The function does what the tree walk does, in the same
order, with the same helpers; only the dispatch is gone:

* every reference to ``$input``, ``$util``, ``$context`` or ``$stageVariables`` (when the
  template never assigns that name) is a local variable, and their properties and methods are
  looked up when the template is compiled (``$input.params('id')`` is a direct call of
  ``TemplateInput.vtl_params``, ``$util.escapeJavaScript(x)`` of ``escape_javascript``);
  ``$input.params().header.get('Name')`` (or ``.path`` / ``.querystring``) reads the one value
  without building the three parameter maps;
* a variable the template never assigns is null; one it assigns is read from the namespace as
  ``_engine`` does (``#set`` and ``#foreach`` keep airspeed's ``LocalNamespace`` chain, so the
  scoping rules are the engine's);
* each statement (text, reference, ``#set``, ``#if``, ``#foreach``) runs in its own ``try``, so
  a failure is reported against the same node, with the same line, column and message, as
  ``_engine._evaluate`` reports it (zero-cost ``try`` in CPython 3.11+);
* what the compiler does not handle itself is delegated to the node (``node.evaluate`` /
  ``node.calculate`` with the same namespace and state), and a template it cannot compile at all
  (``#macro``, ``#define``, a nesting deeper than Python allows) is not compiled: it is rendered
  by the tree walk, as before.

* a plain ``#set($x = ...)`` whose variable nothing reads (``#set($root = $input.path('$'))``
  left over in a template) computes its value, for the failures it may raise, and stores
  nothing; a template left without stores needs no namespace of its own.

The generated source is kept on the function (``__source__``) for inspection and tests, and the
names of ``BASE_NAMES`` it may read from its namespace (``__needs__``): a caller may leave the
others out (``MappingTemplate.render_text`` builds no ``$context`` for a template that never
reads it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from airspeed import operators as ops

from fastgw.mapping import _engine
from fastgw.mapping._engine import Break, LocalNamespace, Stop
from fastgw.mapping._java import JavaList, checked, java_str, method_table, to_json
from fastgw.mapping.jsonpath import JsonPathError, compile_path

__all__ = ["compile_template"]

#: The names a template starts with (``MappingTemplate.render``'s namespace).
BASE_NAMES = ("input", "util", "context", "stageVariables")
_LOCAL = {"input": "inp", "util": "util", "context": "ctx", "stageVariables": "sv"}

_VariableExpression = ops.VariableExpression
_NameOrCall = ops.NameOrCall
_ArrayIndex = ops.ArrayIndex
_FormalReference = ops.FormalReference
_Value = ops.Value
_Expression = ops.Expression
_ParenthesizedExpression = ops.ParenthesizedExpression
_UnaryOperatorValue = ops.UnaryOperatorValue
_literals = (ops.NullLiteral, ops.IntegerLiteral, ops.FloatingPointLiteral, ops.BooleanLiteral)
_StringLiteral = ops.StringLiteral
_InterpolatedStringLiteral = ops.InterpolatedStringLiteral
_ArrayLiteral = ops.ArrayLiteral
_ValueList = ops.ValueList
_EmptyValues = ops._EmptyValues
_DictionaryLiteral = ops.DictionaryLiteral
_Text = ops.Text
_FallthroughHashText = ops.FallthroughHashText
_Comment = ops.Comment
_IfDirective = ops.IfDirective
_SetDirective = ops.SetDirective
_ForeachDirective = ops.ForeachDirective
_StopDirective = ops.StopDirective
_UserDefinedDirective = ops.UserDefinedDirective
_DotDictAccessTerm = ops.DotDictAccessTerm
_NOT_COMPILED = (ops.MacroDefinition, ops.MacroCall, ops.DefineDefinition)


class _Unsupported(Exception):
    """The template cannot be compiled (the tree walk renders it)."""


# --------------------------------------------------------------------------- runtime helpers
def _prop(value: Any, name: str) -> Any:
    """``$x.name`` on a value (``_engine._evaluate_variable``'s plain step)."""
    t = type(value)
    if t is dict:
        return value.get(name)
    if t is LocalNamespace:  # pragma: no cover - a namespace is never a template value
        return _engine._ns_lookup(value, name)
    return (_engine.PROPERTIES.get(t) or _engine._property_getter(t))(value, name)


def _method(value: Any, name: str) -> Any:
    """The method ``name`` of ``value`` (None: no such method, or a null value)."""
    if value is None:
        return None
    return method_table(type(value)).get(name)


def _params_get(inp: Any, section: str, name: Any) -> Any:
    """``$input.params().<section>.get(name)`` without building the parameter maps (when they
    are not built yet: once built, a template may have changed them)."""
    params = inp._params
    if params is not None:
        value = params.get(section)
        method = _method(value, "get")
        return None if method is None else method(value, name)
    if type(name) is not str:  # pragma: no cover - the compiler passes string literals only
        value = inp.params_map().get(section)
        method = _method(value, "get")
        return None if method is None else method(value, name)
    if section == "header":
        return _scan_header(inp, name, name.lower())
    if section == "path":
        path_params = inp.path_params
        return path_params.get(name) if path_params else None
    return inp.query_map().get(name)  # querystring


def _header_get(inp: Any, name: str, lname: str) -> Any:
    """``_params_get(inp, "header", name)``, ``lname`` being ``name.lower()``."""
    if inp._params is not None:
        return _params_get(inp, "header", name)
    return _scan_header(inp, name, lname)


def _scan_header(inp: Any, name: str, lname: str) -> Any:
    """The request's last value of header ``name`` (``lname`` lower-cased) as the parameter map
    keeps it: under the first spelling the client used, so another spelling finds nothing."""
    first = found = None
    n = len(lname)
    for k, v in inp.headers:
        if len(k) == n and k.lower() == lname:  # PERF: lower() only for names of its length
            if first is None:
                first = k
            found = v
    return found if first == name else None


def _set_top(ns: Any, key: str, value: Any) -> None:
    dict.__setitem__(ns, key, value)


# --------------------------------------------------------------------------- the compiler
def _walk(node: Any, seen: set[int]) -> Any:
    """Every airspeed node under ``node`` (any attribute holding one or a list of them)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    yield node
    for value in vars(node).values():
        if isinstance(value, ops._Element) or type(value) is _EmptyValues:
            yield from _walk(value, seen)
        elif isinstance(value, (list, tuple)):
            for item in value:
                if isinstance(item, ops._Element):
                    yield from _walk(item, seen)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, ops._Element):
                    yield from _walk(k, seen)
                if isinstance(v, ops._Element):
                    yield from _walk(v, seen)


class _Gen:
    def __init__(self, root: Any, dead: frozenset[str] = frozenset()) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.const_ids: dict[int, str] = {}
        self.temps = 0
        self.uses_ns = False
        self.uses_loader = False
        self.used_base: set[str] = set()
        #: A node evaluates itself (``delegate``): it may read any name of the namespace.
        self.delegated = False
        #: A statement node evaluates itself into ``out`` (it calls ``out.write``).
        self.writes_out = False
        #: Assigned names the generated code reads back (``_lookup``, ``ns[name]``).
        self.reads: set[str] = set()
        #: Names set by a plain ``#set($name = ...)`` and never read (``dead_stores``): the
        #: value is computed (its failures are the template's), the store is left out.
        self.dead = dead
        #: Expressions whose value cannot change once computed (see ``hoist``).
        self.pure: set[str] = {"None", "True", "False", "inp", "util", "ctx", "sv"}
        assigned: set[str] = set()
        plain: set[str] = set()
        for node in _walk(root, set()):
            if isinstance(node, _NOT_COMPILED):
                raise _Unsupported(type(node).__name__)
            if type(node) is ops.Assignment:
                assigned.add(node.root_term)
                if not node.terms:
                    plain.add(node.root_term)
            elif type(node) is _ForeachDirective:
                assigned.update((node.loop_var_name, "foreach", "velocityCount", "velocityHasNext"))
        self.assigned = assigned
        #: Names only ever set by plain ``#set($name = ...)`` (candidates for ``dead``).
        self.plain_sets = plain

    def needs(self) -> frozenset[str]:
        """The names of ``BASE_NAMES`` the generated function may read from its namespace."""
        if self.delegated:
            return frozenset(BASE_NAMES)
        return frozenset(self.used_base | (self.assigned & set(BASE_NAMES)))

    def dead_stores(self) -> frozenset[str]:
        """Plain ``#set`` targets that nothing reads (valid once the whole template is generated)."""
        if self.delegated:
            return frozenset()
        return frozenset(self.plain_sets - self.reads - set(BASE_NAMES))

    # ------------------------------------------------------------------ helpers
    def const(self, value: Any) -> str:
        """A name for ``value`` in the generated function's globals."""
        key = id(value)
        name = self.const_ids.get(key)
        if name is None:
            name = f"_k{len(self.consts)}"
            self.consts[name] = value
            self.const_ids[key] = name
            self.pure.add(name)
        return name

    def literal(self, value: Any) -> str:
        text = repr(value) if value is None or type(value) in (bool, int, str) else self.const(value)
        self.pure.add(text)
        return text

    def temp(self) -> str:
        self.temps += 1
        name = f"t{self.temps}"
        self.pure.add(name)
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    # ------------------------------------------------------------------ statements
    def block(self, items: Any, indent: int, scope: str) -> None:
        """A Block's children (``Block.items``: text already as str, comments dropped)."""
        pending: list[str] = []
        for item in items:
            if type(item) is str:
                pending.append(item)
                continue
            if type(item) is _FallthroughHashText:
                pending.append(item.text)
                continue
            if type(item) is _Comment:
                continue
            if pending:
                self.emit(indent, f"write({self.literal(''.join(pending))})")
                pending = []
            self.statement(item, indent, scope)
        if pending:
            self.emit(indent, f"write({self.literal(''.join(pending))})")

    def guarded(self, node: Any, indent: int, body: Callable[[int], None]) -> None:
        """``body`` in a try that reports a failure against ``node`` (``_engine._evaluate``)."""
        self.emit(indent, "try:")
        mark = len(self.lines)
        body(indent + 1)
        if len(self.lines) == mark:
            self.emit(indent + 1, "pass")
        self.emit(indent, "except _TEE:")
        self.emit(indent + 1, "raise")
        self.emit(indent, "except Exception as ex:")
        self.emit(indent + 1, f"raise _TEE({self.const(node)}, (type(ex), ex, ex.__traceback__)) from ex")

    def statement(self, node: Any, indent: int, scope: str) -> None:
        t = type(node)
        if t is _FormalReference:
            self.guarded(node, indent, lambda i: self.reference(node, i, scope))
        elif t is _SetDirective:
            assignment = node.assignment  # its own evaluate() is the one that reports failures
            self.guarded(assignment, indent, lambda i: self.assignment(assignment, i, scope))
        elif t is _IfDirective:
            self.guarded(node, indent, lambda i: self.if_directive(node, i, scope))
        elif t is _ForeachDirective:
            self.guarded(node, indent, lambda i: self.foreach(node, i, scope))
        elif t is _StopDirective:
            self.emit(indent, "raise _Stop()")
        elif t is _UserDefinedDirective and type(node.directive) is _engine._BreakDirective:
            self.emit(indent, "raise _Break()")
        else:
            # Anything else: the node evaluates itself (and reports its own failures).
            self.uses_ns = self.uses_loader = self.delegated = self.writes_out = True
            self.emit(indent, f"{self.const(node)}.evaluate(out, {scope}, loader)")

    def reference(self, node: Any, indent: int, scope: str) -> None:
        # _engine._evaluate_reference
        if node.expression is None:
            self.emit(indent, f"write({self.literal(node.my_text())})")
            return
        v = self.variable(self.value_of(node.expression, indent, scope), indent)
        text = self.literal(node.my_text())
        self.emit(indent, f"if type({v}) is str:")
        self.emit(indent + 1, f"write({text} if {v} == _RFT else {v})")
        self.emit(indent, f"elif {v} is not None:")
        self.emit(indent + 1, f"write(_java_str({v}))")
        if node.alternate is not None:
            self.emit(indent, "else:")
            a = self.variable(self.expr(node.alternate, indent + 1, scope), indent + 1)
            self.emit(indent + 1, f"if {a}:")
            self.emit(indent + 2, f"write({a} if type({a}) is str else _java_str({a}))")

    def assignment(self, node: Any, indent: int, scope: str) -> None:
        # airspeed's Assignment.evaluate_raw, with _engine._set_inherited
        value = self.hoist(self.expr(node.value, indent, scope), indent)
        root = node.root_term
        if not node.terms:
            if root in self.dead:
                return  # never read: the value is computed above, for its failures only
            self.uses_ns = True
            if scope == "ns":  # the template's own namespace: set there
                self.emit(indent, f"_set_top(ns, {root!r}, {value})")
            else:
                self.emit(indent, f"{scope}.set_inherited({root!r}, {value})")
            return
        cur = self.temp()
        if root in self.assigned:
            self.uses_ns = True
            self.reads.add(root)
            self.emit(indent, f"{cur} = {scope}[{root!r}]")
        elif root in _LOCAL:
            self.used_base.add(root)
            self.emit(indent, f"{cur} = {_LOCAL[root]}")
        else:
            self.emit(indent, f"{cur} = namespace[{root!r}]")
        terms = node.terms
        for term in terms[:-1]:
            key = self.term(term, indent, scope)
            self.emit(indent, f"{cur} = {cur}[{key}]")
        key = self.term(terms[-1], indent, scope)
        self.emit(indent, f"{cur}[{key}] = {value}")

    def term(self, term: Any, indent: int, scope: str) -> str:
        inner = term.term
        if type(inner) is _DotDictAccessTerm:
            return repr(inner.value)
        return self.hoist(self.expr(inner.value, indent, scope), indent)

    def condition(self, cond: Any, indent: int, scope: str) -> str:
        # Condition.calculate: null is true (airspeed-ext), else Python truth
        v = self.variable(self.expr(cond.expression, indent, scope), indent)
        return f"{v} is None or {v}"

    def if_directive(self, node: Any, indent: int, scope: str) -> None:
        c = self.condition(node.condition, indent, scope)
        self.emit(indent, f"if {c}:")
        self.block_body(node.block, indent + 1, scope)
        for elseif in node.elseifs:
            self.emit(indent, "else:")
            indent += 1
            c = self.condition(elseif.condition, indent, scope)
            self.emit(indent, f"if {c}:")
            self.block_body(elseif.block, indent + 1, scope)
        else_block = node.else_block
        if type(else_block) is ops.ElseBlock:
            self.emit(indent, "else:")
            self.block_body(else_block.block, indent + 1, scope)

    def block_body(self, block: Any, indent: int, scope: str) -> None:
        mark = len(self.lines)
        self.block(block.items, indent, scope)
        if len(self.lines) == mark:
            self.emit(indent, "pass")

    def foreach(self, node: Any, indent: int, scope: str) -> None:
        # _engine._foreach
        self.uses_ns = self.uses_loader = True
        iterable = self.hoist(self.expr(node.value, indent, scope), indent)
        got = self.temp()
        self.emit(indent, f"{got} = _loop_items({iterable}, loader)")
        self.emit(indent, f"if {got} is not None:")
        indent += 1
        n = self.temp()
        items, count, local, state, i, c, has_next = (self.temp() for _ in range(7))
        self.emit(indent, f"{items}, {n}, {count} = {got}")
        self.emit(indent, f"{local} = _LocalNamespace({scope})")
        self.emit(indent, f"{state} = {{}}")
        self.emit(indent, f"_set_top({local}, 'foreach', {state})")
        self.emit(indent, f"for {i} in range({count}):")
        indent += 1
        self.emit(indent, f"{c} = {i} + 1")
        self.emit(indent, f"{has_next} = {c} < {n}")
        self.emit(indent, f"_set_top({local}, {node.loop_var_name!r}, {items}[{i}])")
        self.emit(indent, f"_set_top({local}, 'velocityCount', {c})")
        self.emit(indent, f"_set_top({local}, 'velocityHasNext', {has_next})")
        self.emit(indent, f"{state}['count'] = {c}")
        self.emit(indent, f"{state}['index'] = {i}")
        self.emit(indent, f"{state}['hasNext'] = {has_next}")
        self.emit(indent, f"{state}['first'] = {i} == 0")
        self.emit(indent, f"{state}['last'] = {c} == {n}")
        self.emit(indent, "try:")
        self.block_body(node.block, indent + 1, local)
        self.emit(indent, "except _Break:")
        self.emit(indent + 1, "break")

    # ------------------------------------------------------------------ expressions
    def hoist(self, expr: str, indent: int) -> str:
        """``expr`` evaluated now, into a temporary (a literal, a constant, a temporary or a fixed
        local stays as it is: reading it later gives the same value)."""
        if expr in self.pure:
            return expr
        t = self.temp()
        self.emit(indent, f"{t} = {expr}")
        return t

    def variable(self, expr: str, indent: int) -> str:
        """``hoist``, always to a name (``x is None`` on a literal is a SyntaxWarning)."""
        expr = self.hoist(expr, indent)
        if expr[:1].isalpha() or expr[:1] == "_":
            return expr
        t = self.temp()
        self.emit(indent, f"{t} = {expr}")
        return t

    def delegate(self, node: Any) -> str:
        self.uses_ns = self.uses_loader = self.delegated = True
        return f"{self.const(node)}.calculate({{scope}}, loader)"

    def expr(self, node: Any, indent: int, scope: str) -> str:
        """Code for ``node.calculate(scope, loader)``: an expression whose evaluation has no
        effect beyond reading locals (everything with effects was emitted before, in order)."""
        t = type(node)
        if t is _Value or t is ops.AlternateValue:
            return self.expr(node.expression, indent, scope)
        if t in _literals or t is _StringLiteral:
            return self.literal(node.value)
        if t is _FormalReference:
            if node.expression is None:
                return self.hoist(self.delegate(node).format(scope=scope), indent)
            return self.value_of(node.expression, indent, scope)
        if t is _ParenthesizedExpression or t is _Expression:
            expression = node if t is _Expression else node.calculate.__self__
            terms = expression.expression
            if len(terms) == 1:
                return self.expr(terms[0], indent, scope)
            if len(terms) == 3:
                a = self.hoist(self.expr(terms[0], indent, scope), indent)
                b = self.hoist(self.expr(terms[2], indent, scope), indent)
                return self.hoist(f"{self.const(terms[1].apply_to)}({a}, {b})", indent)
            return self.hoist(self.delegate(expression).format(scope=scope), indent)
        if t is _UnaryOperatorValue:
            v = self.variable(self.expr(node.value, indent, scope), indent)
            op = self.const(node.op)
            return self.hoist(f"False if {v} is None else {op}({v})", indent)
        if t is _ArrayLiteral:
            values = node.values
            if type(values) is _ValueList:
                parts = [self.hoist(self.expr(v, indent, scope), indent) for v in values.values]
                return self.hoist(f"_JavaList([{', '.join(parts)}])", indent)
            if type(values) is _EmptyValues:
                return self.hoist("_JavaList()", indent)
            return self.hoist(self.delegate(values).format(scope=scope), indent)
        if t is _DictionaryLiteral:
            tmp = self.temp()
            self.emit(indent, f"{tmp} = {{}}")
            for key, value in node.local_data.items():
                k = self.hoist(self.expr(key, indent, scope), indent)
                v = self.hoist(self.expr(value, indent, scope), indent)
                self.emit(indent, f"{tmp}[{k}] = {v}")
            return tmp
        if t is _InterpolatedStringLiteral:
            items = node.block.items
            if all(type(item) is str for item in items):
                text = "".join(items)
                try:
                    checked(text)
                except ValueError:
                    pass
                else:
                    return self.literal(text)
            return self.hoist(self.delegate(node).format(scope=scope), indent)
        return self.hoist(self.delegate(node).format(scope=scope), indent)

    def value_of(self, var: Any, indent: int, scope: str) -> str:
        """A reference chain (``_engine._evaluate_variable``), step by step."""
        if type(var) is not _VariableExpression:  # pragma: no cover - the parser makes one
            return self.hoist(self.delegate(var).format(scope=scope), indent)
        chain = var.chain
        kind, name, first = chain[0]
        known: Any = None  # the exact type of the current value, when known at compile time
        if kind == _engine._INDEX:  # pragma: no cover - a chain starts with a name
            return self.hoist(self.delegate(var).format(scope=scope), indent)
        if name in self.assigned:
            self.uses_ns = True
            self.reads.add(name)
            cur = self.hoist(f"_lookup({scope}, {name!r})", indent)
        elif name in _LOCAL:
            self.used_base.add(name)
            cur = _LOCAL[name]
            known = _BASE_TYPES[name]
        else:
            cur = "None"
        if kind == _engine._CALL:
            if first.parameters is not None:
                cur = "None"  # $name(...) on a variable: no functions in the namespace
                known = None
            elif first.index is not None:
                cur = self.index_if_not_null(cur, first.index, indent, scope)
                known = None
        steps = chain[1:]
        pos = 0
        # $input.params().header.get('Name'): one value, no maps.
        if (
            known is _INPUT_TYPE
            and len(steps) >= 3
            and steps[0][0] == _engine._CALL
            and steps[0][1] == "params"
            and steps[0][2].parameters is not None
            and _arguments(steps[0][2]) == []
            and steps[1][0] == _engine._PLAIN
            and steps[1][1] in ("header", "path", "querystring")
            and steps[2][0] == _engine._CALL
            and steps[2][1] == "get"
            and steps[2][2].parameters is not None
            and len(_arguments(steps[2][2])) == 1
            and type(_arguments(steps[2][2])[0].expression) is _StringLiteral
            and method_table(dict).get("get") is _MAP_GET
            and method_table(known).get("params") is _INPUT_PARAMS
        ):
            value = _arguments(steps[2][2])[0].expression.value
            arg = self.literal(value)
            if steps[1][1] == "header" and type(value) is str:
                lname = self.literal(value.lower())
                cur = self.hoist(f"_header_get({cur}, {arg}, {lname})", indent)
            else:
                cur = self.hoist(f"_params_get({cur}, {steps[1][1]!r}, {arg})", indent)
            known = None
            pos = 3
        for kind, name, node in steps[pos:]:
            if kind == _engine._PLAIN:
                if known is not None:
                    cur = self.known_property(known, cur, name, indent)
                else:
                    cur = self.hoist(f"_prop({cur}, {name!r})", indent)
                known = None
            elif kind == _engine._INDEX:
                idx = self.hoist(self.expr(node.index, indent, scope), indent)
                cur = self.hoist(f"_item({cur}, {idx})", indent)
                known = None
            elif node.parameters is not None:
                cur = self.call(known, cur, name, node, indent, scope)
                known = None
            else:  # name[index]
                if known is not None:
                    cur = self.known_property(known, cur, name, indent)
                else:
                    cur = self.hoist(f"_prop({cur}, {name!r})", indent)
                cur = self.index_if_not_null(cur, node.index, indent, scope)
                known = None
        return cur

    def known_property(self, known: type, cur: str, name: str, indent: int) -> str:
        getter = _engine.PROPERTIES.get(known) or _engine._property_getter(known)
        if getter is _engine._no_prop:
            return "None"
        if known is dict:
            return self.hoist(f"{cur}.get({name!r})", indent)
        return self.hoist(f"{self.const(getter)}({cur}, {name!r})", indent)

    def call(self, known: Any, cur: str, name: str, node: Any, indent: int, scope: str) -> str:
        """``cur.name(args)``: null on a null value or an unknown method; the arguments are
        evaluated only when the method exists (``_engine._name_or_call``)."""
        args = _arguments(node)
        out = self.temp()
        if known is not None:
            method = method_table(known).get(name)
            if method is None:
                return "None"
            if method is _UTIL_ESCAPE and len(args) == 1:
                a = self.hoist(self.expr(args[0], indent, scope), indent)
                self.emit(indent, f"{out} = _escape_javascript({a})")
                return out
            if (
                known is _INPUT_TYPE
                and len(args) == 1
                and self.input_literal(method, cur, args[0], out, indent)
            ):
                return out
            parts = [self.hoist(self.expr(a, indent, scope), indent) for a in args]
            self.emit(indent, f"{out} = {self.const(method)}({', '.join([cur, *parts])})")
            return out
        m = self.temp()
        self.emit(indent, f"{m} = _method({cur}, {name!r})")
        self.emit(indent, f"if {m} is None:")
        self.emit(indent + 1, f"{out} = None")
        self.emit(indent, "else:")
        parts = [self.hoist(self.expr(a, indent + 1, scope), indent + 1) for a in args]
        self.emit(indent + 1, f"{out} = {m}({', '.join([cur, *parts])})")
        return out

    def input_literal(self, method: Any, cur: str, arg: Any, out: str, indent: int) -> bool:
        """``$input.path('lit')``, ``$input.json('lit')``, ``$input.params('lit')`` into ``out``
        without the method calls: the JSONPath compiled now, the payload parsed once per input
        (``TemplateInput.document``), a path parameter read in place. False: not one of those."""
        if type(arg) is not _Value or type(arg.expression) is not _StringLiteral:
            return False
        text = arg.expression.value
        if type(text) is not str:  # pragma: no cover - the parser makes str literals
            return False
        if method is _INPUT_PARAMS:
            pp = self.temp()
            self.emit(indent, f"{pp} = {cur}.path_params")
            self.emit(indent, f"{out} = {pp}.get({text!r}) if {pp} else None")
            self.emit(indent, f"if {out} is None:")
            self.emit(indent + 1, f"{out} = _input_param({cur}, {text!r})")
            return True
        if method is not _INPUT_PATH and method is not _INPUT_JSON:
            return False
        try:
            path = compile_path(text)
        except JsonPathError:
            return False  # the method raises it when the template runs, as the tree walk does
        doc = self.temp()
        self.emit(indent, f"{doc} = {cur}._doc")
        self.emit(indent, f"if {doc} is _UNSET_DOC:")
        self.emit(indent + 1, f"{doc} = {cur}.document()")
        found = doc if not path.steps else f"{self.const(path)}.find({doc})"
        if method is _INPUT_JSON:
            self.emit(indent, f"{out} = _to_json({found})")
        else:
            self.emit(indent, f"{out} = {found}")
        return True

    def index_if_not_null(self, cur: str, index: Any, indent: int, scope: str) -> str:
        out = self.temp()
        self.emit(indent, f"{out} = {cur}")
        self.emit(indent, f"if {out} is not None:")
        idx = self.hoist(self.expr(index.index, indent + 1, scope), indent + 1)
        self.emit(indent + 1, f"{out} = _item({out}, {idx})")
        return out


def _arguments(node: Any) -> list[Any]:
    values = node.parameters.values
    return list(values.values) if type(values) is _ValueList else []


_INPUT_TYPE: Any = None
_BASE_TYPES: dict[str, Any] = {}
_INPUT_PARAMS: Any = None
_INPUT_PATH: Any = None
_INPUT_JSON: Any = None
_MAP_GET: Any = None
_UTIL_ESCAPE: Any = None


def bind(input_type: type, util_type: type, context_type: type) -> None:
    """The types of ``$input``, ``$util`` and ``$context`` (``fastgw.mapping.vtl``'s classes,
    with their methods registered in ``_java.METHODS``)."""
    global _INPUT_TYPE, _INPUT_PARAMS, _INPUT_PATH, _INPUT_JSON, _MAP_GET, _UTIL_ESCAPE
    _INPUT_TYPE = input_type
    _BASE_TYPES.update(
        {"input": input_type, "util": util_type, "context": context_type, "stageVariables": dict}
    )
    _INPUT_PARAMS = method_table(input_type).get("params")
    _INPUT_PATH = method_table(input_type).get("path")
    _INPUT_JSON = method_table(input_type).get("json")
    _MAP_GET = method_table(dict).get("get")
    _UTIL_ESCAPE = method_table(util_type).get("escapeJavaScript")


def compile_template(root: Any, name: str, helpers: dict[str, Any]) -> Callable[..., None] | None:
    """The render function of a parsed template (``_engine.parse``), or None when it cannot be
    compiled. It is called as ``fn(out, namespace)``, where ``namespace`` is the dict that
    ``MappingTemplate.render`` gives the tree walk, and writes the output to ``out`` (an
    ``_engine.Out``); failures are raised as the tree walk raises them."""
    try:
        gen = _Gen(root)
        gen.block(root.block.items, 1, "ns")
        dead = gen.dead_stores()
        if dead:
            gen = _Gen(root, dead)
            gen.block(root.block.items, 1, "ns")
    except (_Unsupported, RecursionError):
        return None
    head = ["def render(out, namespace):", "    write = out.append"]
    for base in sorted(gen.used_base):
        head.append(f"    {_LOCAL[base]} = namespace[{base!r}]")
    if gen.uses_ns:
        head.append("    ns = _LocalNamespace(namespace)")
    if gen.uses_loader:
        head.append("    loader = _RenderState()")
    source = "\n".join(head + gen.lines) + "\n"
    needs = gen.needs()
    text_source = None
    if "context" not in needs:
        # The same code as a function of $input and $stageVariables that returns the text
        # (``MappingTemplate.render_text``): no namespace unless the template keeps variables
        # (it never reads "context" from it), #stop / #break ending the render inside.
        # PERF: a plain list unless a node writes to ``out`` itself (``_Out`` has ``write``):
        # a list subclass costs ~0.3 µs more to make and to append to.
        out = "_Out()" if gen.writes_out else "[]"
        head = ["def text(inp, sv):", f"    out = {out}", "    write = out.append"]
        if "util" in gen.used_base:
            head.append("    util = _UTIL")
        if gen.uses_ns:
            head.append("    ns = _LocalNamespace({'input': inp, 'util': _UTIL, 'stageVariables': sv})")
        if gen.uses_loader:
            head.append("    loader = _RenderState()")
        head.append("    try:")
        body = ["    " + line for line in gen.lines] or ["        pass"]
        tail = ["    except (_Stop, _Break):", "        pass", "    return ''.join(out)"]
        text_source = "\n".join(head + body + tail) + "\n"
    env: dict[str, Any] = {
        "__builtins__": __builtins__,
        "_TEE": ops.TemplateExecutionError,
        "_RFT": ops.REPLACE_FORMAL_TEXT,
        "_java_str": java_str,
        "_LocalNamespace": LocalNamespace,
        "_RenderState": _engine.RenderState,
        "_Stop": Stop,
        "_Break": Break,
        "_JavaList": JavaList,
        "_lookup": _engine._ns_lookup,
        "_item": _engine._item,
        "_loop_items": _engine.loop_items,
        "_prop": _prop,
        "_method": _method,
        "_params_get": _params_get,
        "_header_get": _header_get,
        "_set_top": _set_top,
        "_to_json": to_json,
        "_Out": _engine.Out,
        **helpers,
        **gen.consts,
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = compile(source, f"<template {name}>", "exec")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        return None  # e.g. "too many statically nested blocks": the tree walk renders it
    exec(code, env)
    fn: Any = env["render"]
    fn.__source__ = source
    fn.__needs__ = needs
    fn.__text__ = None
    if text_source is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                text_code = compile(text_source, f"<template {name}>", "exec")
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            pass  # one block deeper than ``render``: ``render_text`` falls back to ``render``
        else:
            exec(text_code, env)
            fn.__text__ = env["text"]
            fn.__text__.__source__ = text_source
    return fn  # type: ignore[no-any-return]
