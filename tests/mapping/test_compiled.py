"""Compiled templates (``fastgw.mapping._compile``) against the tree walk (``_engine``).

Every template of the corpus is rendered both ways, on several inputs, and must give the same
body and overrides, or the same error (class, message, line, column, status). ``test_vtl.py``
runs its whole suite both ways too (its ``template_mode`` fixture).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fastgw.mapping import MappingTemplate, TemplateError, TemplateInput, _compile, _engine, vtl
from fastgw.mapping.vtl import Rendered

BODY = orjson.dumps(
    {
        "a": 1,
        "s": "x/y",
        "items": [{"n": 1, "t": "a"}, {"n": 2, "t": "b"}, {"n": 3, "t": "c"}],
        "m": {"k": "v", "z": None},
        "big": 1,
        "f": 2.5,
    }
).replace(b'"big":1', b'"big":12345678901234567890123')
HEADERS = [
    ("Host", "example.com"),
    ("User-Agent", 'ua/1.0 "q" é'),
    ("X-Multi", "1"),
    ("x-multi", "2"),
    ("accept", "application/json"),
]
INPUTS: list[tuple[bytes | str, list[tuple[str, str]], str, dict[str, str] | None]] = [
    (BODY, HEADERS, "q=1&q=2&r=a%20b&e", {"id": "7", "proxy": "a/b"}),
    (b"", [], "", None),
    (b"not json", [("user-agent", "low"), ("User-Agent", "up")], "", {}),
    (b"[1, 2, 3]", [("Content-Type", "application/json")], "id=q", None),
    ("  ", [("X", "__FORMAL_REFERENCE__REPLACE_TEXT__")], "", {"id": "__FORMAL_REFERENCE__REPLACE_TEXT__"}),
]
CONTEXT = {"requestId": "r-1", "identity": {"sourceIp": "1.2.3.4"}, "authorizer": {"claims": {"sub": "u"}}}
STAGE_VARIABLES = {"env": "prod", "n": "3"}

CORPUS = [
    # the bench's templates (bench/rest.py)
    '{"id": "$input.params(\'id\')", '
    '"ua": "$util.escapeJavaScript($input.params().header.get(\'User-Agent\'))"}',
    "#set($b = $input.path('$'))\n{\"wrapped\": $input.json('$')}",
    # references and properties
    "plain text only",
    "$input.body|$input.json('$.a')|$input.path('$.s')|$input.path('$.items').size()",
    "$input.path('$').m.k $input.path('$').items[1].t $input.path('$')['m']['k'] $input.path('$').nothing.x",
    "$input.json('$.items[0]') $input.json('$.nope') $input.json('$..n') "
    "$input.path('$.big') $input.path('$.f')",
    "$input.params('id') $input.params('q') $input.params('user-agent') $input.params('nope').",
    "$input.params() | $input.params().path | $input.params().querystring.get('r')",
    "$input.params().header.get('User-Agent')|$input.params().header.get('user-agent')|"
    "$input.params().header.get('X-Multi')|$input.params().header.get('x-multi')|$input.params().header.get('no')",
    "$input.params().path.get('id')/$input.params().querystring.get('q')/$input.params().querystring.get('e')",
    "$input.params().header['User-Agent'] $input.params().header.User-Agent $input.params().header.size()",
    "#set($p = $input.params())$p.header.put('User-Agent', 'changed')"
    "$input.params().header.get('User-Agent')",
    "$input.params().header.get($input.params('id'))",
    "$input.getBody() $input.nope $input.nope() $input.params('a', 'b')",
    "$util.escapeJavaScript($input.body) $util.escapeJavaScript(null) $util.urlEncode('a b~*')",
    "$util.base64Encode('hé') $util.base64Decode('aGk=') $util.parseJson('{\"a\": [1]}').a $util.nope('x')",
    "$util.escapeJavaScript() $util.escapeJavaScript('a', 'b')",
    "$util.base64Decode('***')",
    "$util.parseJson('{')",
    "$context.requestId $context.identity.sourceIp $context.authorizer.claims.sub $context.nope.x",
    "$context.get('requestId') $context['requestId'] $context.size()",
    "$stageVariables.env $stageVariables['n'] $stageVariables.get('env') $stageVariables.nope",
    "$nothing|$!nothing|${nothing}|$!{nothing}|${nothing|'alt'}|${input.params('id')|'alt'}|$ |#|\\$x|$1",
    "${nothing|$input.params('id')}${nothing|0}${nothing|''}${nothing|[1, 2]}",
    "$input.params('id').length() $input.params('id').toUpperCase() $input.params('id').substring(10)",
    "line1\n#set($s = 'abc')\n  $s.substring(10)",
    # #set, scoping, overrides
    '#set($x = 1)#set($y = $x + 1)#set($z = "$x-$y")$x $y $z',
    "#set($input = 'shadow')$input $input.length()#set($util = 5)$util",
    "#set($m = {'a': 1, 'b': [1, 2], \"k$input.params('id')\": null})$m $m.a $m.b[1] $m.size()",
    "#set($m = {})#set($m.a = 1)#set($m['b'] = 2)#set($m.c = {})#set($m.c.d = 3)$m",
    "#set($nope.x = 1)after",
    "#set($l = [1, 2, 3])#set($l[0] = 9)$l $l.get(1) $l[5] $l[-1]",
    "#set($l = [])$l.add('a')$l.add('b')$l.size() $l $l.isEmpty()",
    "#set($context.requestOverride.header.X-A = 'v')#set($context.requestOverride.querystring.q = ['1', '2'])"
    "#set($context.requestOverride.path.id = 'p')#set($context.responseOverride.status = 201)"
    "#set($context.responseOverride.header.H = 'h')done",
    "#set($context.responseOverride.status = 201)#set($context.responseOverride.status = 202)",
    "#set($context.responseOverride.status = 'abc')x",
    "#set($context.requestOverride = {})x",
    "#set($context.extra = 'e')$context.extra $context.requestId",
    "#set($stageVariables.env = 'changed')$stageVariables.env",
    "#set($s = \"#set($inner = 'in')x\")$s $inner",
    # operators and conditions
    "#set($a = 7)#set($b = 2)$a+$b=#set($c = $a + $b)$c ${a}/${b} #set($d = $a / $b)$d #set($e = $a % $b)$e",
    "#set($x = 1 + 2 * 3 - 4)$x #set($y = (1 + 2) * 3)$y #set($z = 'a' + 1 + 2)$z #set($w = 1 / 0)[$w]",
    "#if($input.path('$.a') == 1)one#elseif($input.path('$.a') == 2)two#else other#end",
    "#if($nothing)null-is-true#end#if(!$nothing)not#end#if($input.params('nope'))x#else empty#end",
    "#if($input.path('$.a') > 0 && $input.path('$.s') != '' || !$nothing)yes#end",
    "#if(1 < 'a')lt#end#if('a' == 'a')eq#end#if(1 == 1.0)num#end#if(1 == '1')str#end"
    "#if(true and false)and#end",
    "#if($a)a#elseif($b)b#elseif($c)c#end.",
    "#if(0)zero#end#if('')empty#end#if([])list#end#if({})map#end#if(false)f#else not-false#end",
    "#if($input.path('$').m.z)z#end#if($input.path('$.items'))items#end",
    # loops
    "[#foreach($e in $input.path('$.items'))$e.n:$e.t#if($foreach.hasNext),#end#end]",
    "#foreach($i in [1..3])#foreach($j in [3..1])$i$j $velocityCount $foreach.index $foreach.first "
    "$foreach.last;#end#end",
    "#foreach($i in [1..5])#if($i == 3)#break#end$i#end.#foreach($i in [1..3])#set($last = $i)#end$last",
    "#foreach($v in {'a': 1, 'b': 2})$v#end|#set($m = {'a': 1})#foreach($k in $m.keySet())$k#end|"
    "#foreach($x in 'str')x#end",
    "#foreach($x in $nothing)x#end#foreach($x in 5)x#end#foreach($x in $input.path('$.m'))[$x]#end",
    "#foreach($i in [1..1500])#end$velocityCount|#foreach($i in [1..1200])#set($n = $i)#end$n",
    "#set($n = 0)#foreach($i in [1..3])#foreach($j in [1..1200])#set($n = $n + 1)#end#end$n",
    "#foreach($i in [1..3])$i#stop#end after",
    "a#break b",
    "#foreach($i in ['x', 'y'])#set($i = 'z')$i#end $i",
    '#foreach($i in [1..2])#set($q = [$i, "$i"])$q#end',
    "#foreach($i in [1..$input.path('$.a')])$i#end#set($s = 'a')#foreach($i in [$s..2])$i#end",
    # comments, escapes, odd text
    "## a comment\n#* block\ncomment *#text #notadirective #ff0000 x \\#set($x = 1) $x",
    "#set( $x = 'a' )\n$x\n#if( $x )\nyes\n#end\nend",
    # macros and defines: not compiled, walked
    "#macro(m $a)<$a>#end#m($input.path('$.a'))#m('b')",
    "#define($d)D$input.params('id')#end$d $d()",
]


def _render(template: MappingTemplate, compiled: bool, case: int) -> Any:
    body, headers, query, params = INPUTS[case]
    fn = template._fn
    if not compiled:
        template._fn = None
    try:
        out = template.render(TemplateInput(body, headers, query, params), dict(CONTEXT), STAGE_VARIABLES)
    except TemplateError as ex:
        reason = getattr(ex, "reason", None)
        return ("error", type(ex).__name__, str(ex), ex.line, ex.column, ex.status, reason)
    finally:
        template._fn = fn
    return _result(out)


def _result(out: Rendered) -> Any:
    return (out.body, out.request_override.to_dict(), out.response_override.to_dict())


@pytest.mark.parametrize("source", CORPUS)
def test_compiled_renders_as_the_tree_walk(source: str) -> None:
    template = MappingTemplate(source, name="t")
    if "#macro" in source or "#define" in source:
        assert template._fn is None
        return
    assert template._fn is not None, source
    for case in range(len(INPUTS)):
        assert _render(template, True, case) == _render(template, False, case), (source, case)


def test_a_template_is_rendered_many_times_with_fresh_state() -> None:
    template = MappingTemplate("[$seen]#set($seen = true)#foreach($i in [1..2])$i#end$foreach")
    assert template._fn is not None
    for _ in range(3):
        assert template.render().body == "[]12"


def test_params_header_get_reads_one_value_without_building_the_maps() -> None:
    template = MappingTemplate("$input.params().header.get('User-Agent')")
    assert template._fn is not None
    assert "_header_get(inp, 'User-Agent', 'user-agent')" in template._fn.__source__
    inp = TemplateInput(b"", HEADERS)
    assert template.render(inp).body == HEADERS[1][1]
    assert inp._params is None
    # Once a template has built (and changed) the maps, they are what is read.
    inp.params_map()["header"]["User-Agent"] = "changed"
    assert template.render(inp).body == "changed"


def test_input_methods_and_util_are_resolved_at_compile_time() -> None:
    source = MappingTemplate(
        "$input.params('id')$util.escapeJavaScript($input.body)$input.json('$')"
    )._fn.__source__
    assert "_escape_javascript(" in source
    assert "_method(" not in source and "_prop(" not in source


def test_loop_budget_and_deep_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_engine, "MAX_ITERATIONS", 5000)
    template = MappingTemplate("#foreach($i in [1..10])#foreach($j in [1..1000])#end#end")
    assert template._fn is not None
    with pytest.raises(TemplateError, match="more than 5000 #foreach iterations") as ctx:
        template.render()
    assert (ctx.value.line, ctx.value.column) == (1, 24)
    # Deeper than Python's static block nesting: walked instead.
    deep = "#foreach($i in [1])" * 12 + "x" + "#end" * 12
    walked = MappingTemplate(deep)
    assert walked._fn is None
    assert walked.render().body == "x"


def test_not_compiled_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vtl, "COMPILE", False)
    assert MappingTemplate("$input.body")._fn is None


def test_a_subclass_of_template_input_is_walked() -> None:
    class Custom(TemplateInput):
        __slots__ = ()

    template = MappingTemplate("$input.params('id')")
    assert template.render(Custom(path_params={"id": "7"})).body == "7"
    assert _compile.BASE_NAMES == ("input", "util", "context", "stageVariables")
