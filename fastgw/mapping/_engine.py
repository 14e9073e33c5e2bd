"""airspeed-ext, adapted to AWS's Velocity: parse with it, evaluate with a few parts replaced.

airspeed-ext (LocalStack's fork of airspeed) parses Velocity and evaluates it with the quirks
LocalStack recorded against real API Gateway (undefined references render as nothing, an
undefined reference is true in ``#if``, string literals keep their backslashes, ...). fastgw
uses its parser and evaluator as they are and replaces, once, at import, the parts below; every
replacement is a function of this module assigned over airspeed's (``_install``), so the list of
what differs from airspeed-ext is this file. The version range in pyproject.toml pins the
internals these replacements rely on; tests/mapping covers each of them.

* ``NameOrCall.calculate`` (``$a.b``, ``$a.b(...)``): APPSEC. airspeed resolves a name with
  ``obj[name]``, then ``getattr(obj, name)`` on *any* object, so ``$util.__class__`` and from
  there module globals were reachable from a template (and, through ``#evaluate``, from a
  request body). Here a property is a map lookup (or one of the names a fastgw object
  exposes), and a method is looked up in ``_java.METHODS`` only: Java's String / List / Map
  methods, and the documented methods of ``$input`` / ``$util``. No exception is raised and
  caught per lookup either.
* ``SubExpression.calculate`` (``$a[0]``, ``$m['k']``): a missing index is null (Velocity), not
  an error; the index expression is evaluated in the template's namespace (airspeed used the
  indexed object as namespace).
* ``ForeachDirective.evaluate_raw``: at most ``MAX_FOREACH`` (1,000) iterations per loop, as AWS
  (Velocity's ``directive.foreach.maxloops``): the loop stops after the 1,000th element, with
  ``$foreach.hasNext`` still true on it, as in Velocity. A map iterates over its values (Java
  Velocity; airspeed iterated keys). One namespace for the whole loop, ``#break`` supported,
  and a budget of ``MAX_ITERATIONS`` loop iterations per render, nested loops included.
* ``LocalNamespace.set_inherited``: ``#set`` of a new variable inside a loop or macro sets it for
  the whole template (Velocity has one context); airspeed dropped it at the end of the
  iteration.
* ``value_to_string``: Java's ``toString()`` (``_java.java_str``) instead of Python's ``str``.
* ``BinaryOperator`` ``+ - * / %`` and comparisons: Velocity's rules: ``+`` with a string
  concatenates, integer ``/`` and ``%`` truncate toward zero, division by zero and arithmetic on
  null give null, ``==`` between different types compares their ``toString()``, ``<`` / ``>``
  on non-numbers are false, all instead of Python exceptions.
* ``InterpolatedStringLiteral.calculate`` / ``Range.calculate`` / array literals: strings are
  bounded (``_java.MAX_STRING``), ranges too (``MAX_RANGE``), lists are ``JavaList``.
* ``StopDirective`` / ``#break``: stop by exception, so the output is a plain list of pieces.
* ``#evaluate``, ``#include`` and ``#parse`` are rejected when the template is parsed. APPSEC:
  ``#evaluate`` would run text from the request as template code; there is no file loader.
* PERF, same results: ``Block`` writes its text children itself and skips comments; a
  reference chain (``VariableExpression``: ``$a.b[0].c()``) is flattened at parse time into one
  loop; ``FormalReference.evaluate_raw``, ``_Element.evaluate`` (no ``*args``),
  ``Expression.calculate`` (one- and two-operand fast paths), ``Value`` (bound to its
  expression) and ``ParameterList`` lose a call or two each. A simple request template renders
  in about 7 us instead of 20 us with airspeed-ext as it is, the PetStore template in 17 us
  instead of 38 us.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import airspeed
from airspeed import operators as ops

from fastgw.mapping._java import JavaList, MapEntry, checked, java_str, method_table

if not hasattr(ops, "REPLACE_FORMAL_TEXT"):  # pragma: no cover - a packaging error
    raise ImportError(
        "fastgw.mapping needs airspeed-ext (LocalStack's airspeed), but the 'airspeed' package "
        "installed is the original one: pip uninstall airspeed && pip install 'airspeed-ext>=0.6.9,<0.7'"
    )

__all__ = [
    "MAX_FOREACH",
    "MAX_ITERATIONS",
    "MAX_RANGE",
    "PROPERTIES",
    "Break",
    "LoopBudgetExceeded",
    "Out",
    "RenderState",
    "Stop",
    "loop_items",
    "parse",
]

#: AWS: "#foreach ... limited to 1,000 iterations" (per loop).
MAX_FOREACH = 1000
#: fastgw's bound on all loop iterations of one render (nested loops multiply).
MAX_ITERATIONS = 1_000_000
#: The longest range literal ``[a..b]``.
MAX_RANGE = 100_000

LocalNamespace = ops.LocalNamespace
_FunctionDefinition = ops._FunctionDefinition
_DefineDefinition = ops.DefineDefinition
_ArrayIndex = ops.ArrayIndex
_MISSING: Any = object()


class Out(list):  # type: ignore[type-arg]
    """The output: ``write`` is ``list.append`` (airspeed's StringIO subclass costs a call per piece)."""

    __slots__ = ()
    write = list.append


class RenderState:
    """Per-render state, passed where airspeed passes its template loader (it reaches every node)."""

    __slots__ = ("iterations_left",)

    def __init__(self) -> None:
        self.iterations_left = MAX_ITERATIONS

    # airspeed's loader interface: there are no other templates to load.
    def load_text(self, name: str) -> str:
        raise ValueError("#include is not supported")

    def load_template(self, name: str) -> Any:
        raise ValueError("#parse is not supported")


class _ControlFlow(airspeed.TemplateExecutionError):  # type: ignore[misc]
    """Raised through airspeed's nodes untouched (they re-raise TemplateExecutionError as is)."""

    def __init__(self) -> None:
        Exception.__init__(self)
        self.msg = type(self).__name__


class Stop(_ControlFlow):
    """``#stop``: the output so far is the result."""


class Break(_ControlFlow):
    """``#break``: leaves the innermost ``#foreach`` (the template, outside any loop)."""


class LoopBudgetExceeded(RuntimeError):
    pass


# --------------------------------------------------------------------------- property lookup
def _ns_lookup(ns: Any, name: str) -> Any:
    """A variable, from the innermost namespace out (no KeyError raised and caught per level)."""
    while True:
        value = dict.get(ns, name, _MISSING)
        if value is not _MISSING:
            return value
        ns = ns.parent
        if type(ns) is not LocalNamespace:
            return ns.get(name)


def _empty_prop(obj: Any, name: str) -> Any:
    # Velocity's "isEmpty()" property (``$s.empty``); nothing else on strings and lists.
    return len(obj) == 0 if name == "empty" else None


def _entry_prop(obj: Any, name: str) -> Any:
    return getattr(obj, name) if name in ("key", "value") else None


def _map_prop(obj: Any, name: str) -> Any:
    return obj.get(name)


def _no_prop(obj: Any, name: str) -> Any:
    return None


#: ``$obj.name`` by the object's exact type; fastgw's own objects register theirs here.
PROPERTIES: dict[type, Callable[[Any, str], Any]] = {
    dict: dict.get,
    str: _empty_prop,
    list: _empty_prop,
    JavaList: _empty_prop,
    tuple: _empty_prop,
    type(None): _no_prop,
}


def _property_getter(t: type) -> Callable[[Any, str], Any]:
    for base in t.__mro__[1:]:
        getter = PROPERTIES.get(base)
        if getter is not None and base is not object:
            break
    else:
        if issubclass(t, Mapping):
            getter = _map_prop
        elif t is MapEntry:
            getter = _entry_prop
        else:
            getter = _no_prop
    if len(PROPERTIES) < 512:
        PROPERTIES[t] = getter
    return getter


def _run_define(node: Any, define: Any, loader: Any, top_namespace: Any) -> str:
    # As airspeed: a #define block (or macro) reached as a reference renders in place.
    params = node.parameters.calculate(top_namespace, loader) if node.parameters else []
    out = Out()
    define.execute_function(out, top_namespace, params, loader)
    text = "".join(out)
    if isinstance(define, _DefineDefinition) and node.parameters and not params:
        text += node.parameters.my_text()  # airspeed-ext (AWS parity): "$d()" keeps its "()"
    return text


def _item(obj: Any, key: Any) -> Any:
    """``obj[key]`` as Velocity's index notation: null when there is no such element."""
    if type(obj) is dict:
        return obj.get(key)
    if isinstance(obj, (list, tuple)):
        if type(key) is int and 0 <= key < len(obj):
            return obj[key]
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return None


def _name_or_call(self: Any, current_object: Any, loader: Any, top_namespace: Any) -> Any:
    name = self.name
    t = type(current_object)
    if t is LocalNamespace:
        result = _ns_lookup(current_object, name)
        if result is not None and isinstance(result, _FunctionDefinition):
            return _run_define(self, result, loader, top_namespace)
        if self.parameters is not None:
            return None  # $name(...) on a variable: there are no functions in the namespace
    elif self.parameters is not None:
        if current_object is None:
            return None
        method = method_table(t).get(name)
        if method is None:
            return None  # Velocity: no such method -> null (AWS renders nothing)
        return method(current_object, *self.parameters.calculate(top_namespace, loader))
    else:
        getter = PROPERTIES.get(t) or _property_getter(t)
        result = getter(current_object, name)
    index = self.index
    if index is not None and result is not None:
        result = _item(result, index.calculate(top_namespace, loader))
    return result


def _sub_expression(self: Any, current_object: Any, loader: Any, global_namespace: Any) -> Any:
    expression = self.expression
    if type(expression) is not _ArrayIndex:
        return expression.calculate(current_object, loader, global_namespace)
    result = _item(current_object, expression.calculate(global_namespace, loader))
    if self.subexpression is not None:
        result = self.subexpression.calculate(result, loader, global_namespace)
    return result


# --------------------------------------------------------------------------- hot nodes
# PERF: the three node types every template is made of, evaluated with fewer Python calls:
# a block writes its text children directly; a reference chain ($a.b[0].c()) is flattened at
# parse time into one loop; a reference writes its value without airspeed's helper calls.
_Text = ops.Text
_Comment = ops.Comment
_VariableExpression = ops.VariableExpression
_SubExpression = ops.SubExpression
_REPLACE_FORMAL_TEXT = ops.REPLACE_FORMAL_TEXT
_block_parse = ops.Block.parse
_variable_parse = ops.VariableExpression.parse


def _parse_block(self: Any) -> None:
    _block_parse(self)
    self.items = tuple(
        child.text if type(child) is _Text else child
        for child in self.children
        if type(child) is not _Comment
    )


def _evaluate_block(self: Any, stream: Any, namespace: Any, loader: Any) -> None:
    write = stream.write
    for item in self.items:
        if type(item) is str:
            write(item)
        else:
            item.evaluate(stream, namespace, loader)


_PLAIN, _CALL, _INDEX = 0, 1, 2


def _step(node: Any) -> tuple[int, Any, Any]:
    if type(node) is _ArrayIndex:
        return (_INDEX, None, node)
    if node.parameters is None and node.index is None:
        return (_PLAIN, node.name, node)
    return (_CALL, node.name, node)


def _parse_variable(self: Any) -> None:
    _variable_parse(self)
    chain = [_step(self.part)]
    sub = self.subexpression
    while sub is not None:
        expression = sub.expression
        if type(expression) is _ArrayIndex:
            chain.append(_step(expression))
            sub = sub.subexpression
        else:  # a VariableExpression: its own part, then its own subexpression
            chain.append(_step(expression.part))
            sub = expression.subexpression
    self.chain = tuple(chain)


def _evaluate_variable(self: Any, namespace: Any, loader: Any, global_namespace: Any = None) -> Any:
    top = namespace if global_namespace is None else global_namespace
    value = namespace
    for kind, name, node in self.chain:
        if kind == _PLAIN:  # $a.name: the usual step, inlined
            t = type(value)
            if t is dict:
                value = value.get(name)
            elif t is LocalNamespace:
                ns = value
                while True:
                    value = dict.get(ns, name, _MISSING)
                    if value is not _MISSING:
                        break
                    ns = ns.parent
                    if type(ns) is not LocalNamespace:
                        value = ns.get(name)
                        break
                if value is not None and isinstance(value, _FunctionDefinition):
                    value = _run_define(node, value, loader, top)
            else:
                value = (PROPERTIES.get(t) or _property_getter(t))(value, name)
        elif kind == _INDEX:
            value = _item(value, node.calculate(top, loader))
        else:
            value = _name_or_call(node, value, loader, top)
    return value


def _evaluate_reference(self: Any, stream: Any, namespace: Any, loader: Any) -> None:
    expression = self.expression
    if expression is None:
        stream.write(self.my_text())
        return
    value = expression.calculate(namespace, loader)
    if type(value) is str:
        stream.write(self.my_text() if value == _REPLACE_FORMAL_TEXT else value)
    elif value is not None:
        stream.write(java_str(value))
    elif self.alternate is not None:
        value = self.alternate.calculate(namespace, loader)
        if value:
            stream.write(value if type(value) is str else java_str(value))
    # else: a null reference renders as nothing (airspeed-ext: AWS parity)


def _evaluate(self: Any, stream: Any, namespace: Any, loader: Any) -> Any:
    # airspeed's _Element.evaluate without the *args packing: errors carry the failing node.
    try:
        return self.evaluate_raw(stream, namespace, loader)
    except airspeed.TemplateExecutionError:
        raise
    except Exception as ex:
        raise airspeed.TemplateExecutionError(self, (type(ex), ex, ex.__traceback__)) from ex


_expression_calculate = ops.Expression.calculate
_value_parse = ops.Value.parse


def _calculate_expression(self: Any, namespace: Any, loader: Any) -> Any:
    terms = self.expression
    n = len(terms)
    if n == 1:
        return terms[0].calculate(namespace, loader)
    if n == 3:
        return terms[1].apply_to(terms[0].calculate(namespace, loader), terms[2].calculate(namespace, loader))
    return _expression_calculate(self, namespace, loader)


def _parse_value(self: Any) -> None:
    _value_parse(self)
    self.calculate = self.expression.calculate


# --------------------------------------------------------------------------- directives
def loop_items(iterable: Any, loader: Any) -> tuple[Any, int, int] | None:
    """What ``#foreach`` iterates over: ``(items, len(items), iterations)``, or None when the
    value is not iterable (the loop renders nothing); the iterations are taken from the
    render's budget (``LoopBudgetExceeded`` past it)."""
    if iterable is None:
        return None
    t = type(iterable)
    if t is list or t is JavaList or t is tuple:
        items = iterable
    elif isinstance(iterable, Mapping):
        items = list(iterable.values())
    elif isinstance(iterable, (list, tuple, range, set, frozenset, type({}.keys()), type({}.values()))):
        items = list(iterable)
    else:
        return None  # Velocity: not iterable (a string, a number): the loop renders nothing
    n = len(items)
    count = n if n <= MAX_FOREACH else MAX_FOREACH
    left = loader.iterations_left - count
    if left < 0:
        raise LoopBudgetExceeded(f"more than {MAX_ITERATIONS} #foreach iterations in one render")
    loader.iterations_left = left
    return items, n, count


def _foreach(self: Any, stream: Any, namespace: Any, loader: Any) -> None:
    got = loop_items(self.value.calculate(namespace, loader), loader)
    if got is None:
        return
    items, n, count = got
    var = self.loop_var_name
    block = self.block
    local = LocalNamespace(namespace)
    state: dict[str, Any] = {}
    local["foreach"] = state
    for i in range(count):
        c = i + 1
        has_next = c < n
        local[var] = items[i]
        local["velocityCount"] = c
        local["velocityHasNext"] = has_next
        state["count"] = c
        state["index"] = i
        state["hasNext"] = has_next
        state["first"] = i == 0
        state["last"] = c == n
        try:
            block.evaluate(stream, local, loader)
        except Break:
            break


def _set_inherited(self: Any, key: str, value: Any) -> None:
    ns = self
    while not dict.__contains__(ns, key):
        parent = ns.parent
        if type(parent) is not LocalNamespace:
            break  # not set anywhere: the template's own namespace (the outermost local one)
        ns = parent
    dict.__setitem__(ns, key, value)


def _stop(self: Any, stream: Any, namespace: Any, loader: Any) -> None:
    raise Stop()


class _BreakDirective(ops._Element):  # type: ignore[misc]
    """``#break`` (Velocity 1.7)."""

    START = re.compile(r"#(?:\{break\}|break\b)(.*)$", re.S | re.I)

    def parse(self) -> None:
        self.identity_match(self.START)

    def evaluate_raw(self, stream: Any, namespace: Any, loader: Any) -> None:
        raise Break()


def _unsupported(what: str) -> Callable[[Any], None]:
    def parse(self: Any) -> None:
        self.identity_match(self.START)
        ex = airspeed.TemplateSyntaxError(self, what)
        ex.args = (f"line {ex.line}, column {ex.column}: {what} is not supported",)
        raise ex

    return parse


def _interpolated(self: Any, namespace: Any, loader: Any) -> str:
    out = Out()
    self.block.evaluate(out, namespace, loader)
    return checked("".join(out))


def _range(self: Any, namespace: Any, loader: Any) -> JavaList:
    a = self.value1.calculate(namespace, loader)
    b = self.value2.calculate(namespace, loader)
    if type(a) is not int or type(b) is not int:
        return JavaList()  # Velocity: a range needs integers (logged), an empty list
    if abs(b - a) >= MAX_RANGE:
        raise ValueError(f"range [{a}..{b}] has more than {MAX_RANGE} elements")
    return JavaList(range(a, b - 1, -1) if b < a else range(a, b + 1))


def _value_list(self: Any, namespace: Any, loader: Any) -> JavaList:
    return JavaList([value.calculate(namespace, loader) for value in self.values])


def _empty_values(self: Any, namespace: Any, loader: Any) -> JavaList:
    return JavaList()


_ValueList = ops.ValueList


def _parameters(self: Any, namespace: Any, loader: Any) -> list[Any]:
    # A method's arguments: a plain list (ValueList.calculate now builds JavaLists for literals).
    values = self.values
    if type(values) is _ValueList:
        return [value.calculate(namespace, loader) for value in values.values]
    return []


# --------------------------------------------------------------------------- operators
def _is_number(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


def _add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is str or type(b) is str or isinstance(a, str) or isinstance(b, str):
        return checked(java_str(a) + java_str(b))
    if _is_number(a) and _is_number(b):
        return a + b
    return None


def _arith(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if _is_number(a) and _is_number(b):
            return fn(a, b)
        return None

    return apply


def _div(a: Any, b: Any) -> Any:
    if b == 0:
        return None
    if type(a) is int and type(b) is int:
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
    return a / b


def _mod(a: Any, b: Any) -> Any:
    if b == 0:
        return None
    if type(a) is int and type(b) is int:
        return a - b * _div(a, b)
    import math

    return math.fmod(a, b)


def _eq(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    ta = type(a)
    tb = type(b)
    if ta is tb:
        return bool(a == b)
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if ta is bool or tb is bool:
        return False
    # Velocity 1.7: objects of unrelated classes are compared by their toString().
    return java_str(a) == java_str(b)


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if (_is_number(a) and _is_number(b)) or (type(a) is str and type(b) is str):
            return op(a, b)
        return False

    return compare


def _install() -> None:
    if getattr(ops, "_fastgw_installed", False):
        return
    ops.NameOrCall.calculate = _name_or_call
    ops._Element.evaluate = _evaluate
    ops.Expression.calculate = _calculate_expression
    ops.Value.parse = _parse_value
    ops.Block.parse = _parse_block
    ops.Block.evaluate_raw = _evaluate_block
    ops.VariableExpression.parse = _parse_variable
    ops.VariableExpression.calculate = _evaluate_variable
    ops.FormalReference.evaluate_raw = _evaluate_reference
    ops.SubExpression.calculate = _sub_expression
    ops.SubExpression.subexpression = None
    ops.ForeachDirective.evaluate_raw = _foreach
    ops.LocalNamespace.set_inherited = _set_inherited
    ops.StopDirective.evaluate_raw = _stop
    ops.InterpolatedStringLiteral.calculate = _interpolated
    ops.Range.calculate = _range
    ops.ValueList.calculate = _value_list
    ops._EmptyValues.calculate = _empty_values
    ops.ParameterList.calculate = _parameters
    ops.value_to_string = java_str
    ops.EvaluateDirective.parse = _unsupported("#evaluate")
    ops.IncludeDirective.parse = _unsupported("#include")
    ops.ParseDirective.parse = _unsupported("#parse")
    if _BreakDirective not in ops.UserDefinedDirective.DIRECTIVES:
        ops.UserDefinedDirective.DIRECTIVES.append(_BreakDirective)
    import operator

    table = ops.BinaryOperator.OPERATORS
    table["+"] = _add
    table["-"] = _arith(operator.sub)
    table["*"] = _arith(operator.mul)
    table["/"] = lambda a, b: _div(a, b) if _is_number(a) and _is_number(b) else None
    table["%"] = lambda a, b: _mod(a, b) if _is_number(a) and _is_number(b) else None
    table["=="] = table["eq"] = _eq
    table["!="] = table["ne"] = lambda a, b: not _eq(a, b)
    table["<"] = table["lt"] = _ordered(operator.lt)
    table["<="] = table["le"] = _ordered(operator.le)
    table[">"] = table["gt"] = _ordered(operator.gt)
    table[">="] = table["ge"] = _ordered(operator.ge)
    ops._fastgw_installed = True


_install()


def parse(source: str, name: str) -> Any:
    """airspeed's parse tree of ``source`` (``airspeed.TemplateSyntaxError`` when invalid)."""
    template = airspeed.Template(source, name)
    template.ensure_compiled()
    return template.root_element
