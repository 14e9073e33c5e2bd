"""VTL mapping templates, driven by the AWS developer guide's documented examples.

The ``DOC_*`` templates are copied from the guide ("Mapping template transformations", "Variables
for data transformations" and its examples, "Override your API's request and response parameters
and status codes"); where the guide shows an output, the rendered body is compared with it
exactly, or, where the guide pretty-prints JSON, compared as JSON and also exactly with what the
engine writes (so that any change of whitespace is seen).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from fastgw.config.compile import ApiRuntime, MockRuntime, RouteRuntime, StageRuntime
from fastgw.functions import events
from fastgw.mapping import (
    InvalidJsonBody,
    MappingTemplate,
    TemplateError,
    TemplateInput,
    _engine,
    context_from_request,
    error_context,
    input_from_event,
    render,
)
from fastgw.mapping.jsonpath import JsonPathError, compile_path
from fastgw.pipeline.request import Request
from fastgw.server import replies
from fastgw_core.router import RouteTrie


@pytest.fixture(autouse=True, params=["compiled", "tree"])
def template_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: templates compiled to Python (``_compile``), and walked (``_engine``)."""
    from fastgw.mapping import vtl

    monkeypatch.setattr(vtl, "COMPILE", request.param == "compiled")
    return str(request.param)


PETS = [
    {"id": 1, "type": "dog", "price": 249.99},
    {"id": 2, "type": "cat", "price": 124.99},
    {"id": 3, "type": "fish", "price": 0.99},
]
PETS_BODY = orjson.dumps(PETS)


def body_of(source: str, body: bytes | str = b"", **kw: Any) -> str:
    inp = TemplateInput(body, kw.pop("headers", ()), kw.pop("query", ""), kw.pop("path_params", None))
    return MappingTemplate(source).render(inp, kw.pop("context", None), kw.pop("stage_variables", None)).body


# ------------------------------------------------------------------------ the guide's examples
# "Mapping template transformations": the PetStore integration response template.
DOC_PETSTORE = """#set($inputRoot = $input.path('$'))
[
#foreach($elem in $inputRoot)
  {
    "description" : "Item $elem.id is a $elem.type.",
    "askingPrice" : $elem.price
  }#if($foreach.hasNext),#end

#end
]"""
DOC_PETSTORE_OUTPUT = [
    {"description": "Item 1 is a dog.", "askingPrice": 249.99},
    {"description": "Item 2 is a cat.", "askingPrice": 124.99},
    {"description": "Item 3 is a fish.", "askingPrice": 0.99},
]


def test_doc_petstore_template() -> None:
    out = body_of(DOC_PETSTORE, PETS_BODY)
    assert orjson.loads(out) == DOC_PETSTORE_OUTPUT
    item = '\n  {{\n    "description" : "Item {} is a {}.",\n    "askingPrice" : {}\n  }}'
    assert out == (
        "[\n"
        + item.format(1, "dog", "249.99")
        + ",\n"
        + item.format(2, "cat", "124.99")
        + ",\n"
        + item.format(3, "fish", "0.99")
        + "\n]"
    )


def test_doc_petstore_template_on_one_line() -> None:
    source = (
        "#set($inputRoot = $input.path('$')) [ #foreach($elem in $inputRoot) { \"description\" : "
        '"Item $elem.id is a $elem.type.", "askingPrice" : $elem.price }#if($foreach.hasNext),#end #end ]'
    )
    out = body_of(source, PETS_BODY)
    assert out == (
        ' [  { "description" : "Item 1 is a dog.", "askingPrice" : 249.99 }, '
        ' { "description" : "Item 2 is a cat.", "askingPrice" : 124.99 }, '
        ' { "description" : "Item 3 is a fish.", "askingPrice" : 0.99 }  ]'
    )
    assert orjson.loads(out) == DOC_PETSTORE_OUTPUT


# "Variables for data transformations": the parameter mapping example.
DOC_ALL_PARAMS = """#set($allParams = $input.params())
{
  "params" : {
    #foreach($type in $allParams.keySet())
    #set($params = $allParams.get($type))
    "$type" : {
      #foreach($paramName in $params.keySet())
      "$paramName" : "$util.escapeJavaScript($params.get($paramName))"
      #if($foreach.hasNext),#end
      #end
    }
    #if($foreach.hasNext),#end
    #end
  }
}"""


def test_doc_all_params_template() -> None:
    inp = TemplateInput(
        b"",
        [("Host", "example.com"), ("X-Quote", 'say "hi"'), ("x-quote", "it's")],
        "name=Ma%C3%AFa&tag=a+b&tag=c",
        {"petId": "42"},
    )
    out = MappingTemplate(DOC_ALL_PARAMS).render(inp).body
    # escapeJavaScript turns ' into \' (not valid JSON: the guide's replaceAll example undoes it).
    assert orjson.loads(out.replace("\\'", "'")) == {
        "params": {
            "path": {"petId": "42"},
            "querystring": {"name": "Maïa", "tag": "c"},
            # A repeated header: its first spelling, its last value.
            "header": {"Host": "example.com", "X-Quote": "it's"},
        }
    }
    assert '"X-Quote" : "it\\\'s"' in out  # Commons Lang escapes ' (the guide says so)
    assert '"name" : "Ma\\u00EFa"' in out  # and non-ASCII characters
    # The maps come in AWS's order: path, querystring, header.
    assert out.index('"path"') < out.index('"querystring"') < out.index('"header"')


def test_doc_input_examples() -> None:
    # "Example JSON mapping template using $input" / "... passing a JSONPath expression to json()"
    body = b'{"mykey": {"a": [1, 2]}, "other": true}'
    tpl = '{\n    "name" : "$input.params(\'name\')",\n    "body" : $input.json(\'$\') \n}'
    assert body_of(tpl, body, query="name=me") == (
        '{\n    "name" : "me",\n    "body" : {"mykey":{"a":[1,2]},"other":true} \n}'
    )
    tpl = '{\n    "name" : "$input.params(\'name\')",\n    "body" : $input.json(\'$.mykey\')  \n}'
    assert body_of(tpl, body, query="name=me") == '{\n    "name" : "me",\n    "body" : {"a":[1,2]}  \n}'


def test_doc_input_things_example() -> None:
    # "Example request and response using $input": POST /things/abc.
    tpl = """{
    "id" : "$input.params('id')",
    "count" : "$input.path('$.things').size()",
    "things" : $util.escapeJavaScript($input.json('$.things'))
}"""
    body = b'{\n    "things" : {\n        "1" : {},\n        "2" : {},\n        "3" : {}\n    }\n}'
    out = body_of(tpl, body, path_params={"id": "abc"})
    # The guide's response shows the things unescaped; escapeJavaScript (Commons Lang) escapes
    # the quotes, as AWS does.
    things = '{\\"1\\":{},\\"2\\":{},\\"3\\":{}}'
    assert out == '{\n    "id" : "abc",\n    "count" : "3",\n    "things" : ' + things + "\n}"


def test_doc_parse_json_example() -> None:
    payload = b'{"errorMessage":"{\\"key1\\":\\"var1\\",\\"key2\\":{\\"arr\\":[1,2,3]}}"}'
    tpl = """#set ($errorMessageObj = $util.parseJson($input.path('$.errorMessage')))
{
   "errorMessageObjKey2ArrVal" : $errorMessageObj.key2.arr[0]
}
"""
    assert body_of(tpl, payload) == '{\n   "errorMessageObjKey2ArrVal" : 1\n}\n'


def test_doc_escape_javascript_replace_all_example() -> None:
    # "$util.escapeJavaScript(data).replaceAll("\\'","'")": escaped single quotes made plain again.
    tpl = """#set($data = $input.path('$.data'))$util.escapeJavaScript($data).replaceAll("\\\\'","'")"""
    assert body_of(tpl, b'{"data": "it\'s \\"quoted\\""}') == 'it\'s \\"quoted\\"'


# "Override your API's request and response parameters and status codes", tutorial 1.
DOC_OVERRIDE_STATUS = """#set($inputRoot = $input.path('$'))
$input.json("$")
#if($inputRoot.toString().contains("error"))
#set($context.responseOverride.status = 400)
#end
"""
# ... tutorial 2.
DOC_OVERRIDE_HEADERS = """#set($header1Override = "foo")
#set($header3Value = "$input.params('header1')$input.params('header2')")
$input.json("$")
#set($context.requestOverride.header.header3 = $header3Value)
#set($context.requestOverride.header.header1 = $header1Override)
"""


def test_doc_response_status_override() -> None:
    template = MappingTemplate(DOC_OVERRIDE_STATUS)
    error = b'{"errors": [{"key": "GetPetRequest.petId", "message": "The value is out of range."}]}'
    out = template.render(TemplateInput(error))
    assert out.body == '{"errors":[{"key":"GetPetRequest.petId","message":"The value is out of range."}]}\n'
    assert out.response_override.status == 400
    assert out.response_override.header == {}
    assert not out.request_override
    ok = template.render(TemplateInput(b'{"id": 1, "type": "dog", "price": 249.99}'))
    assert ok.body == '{"id":1,"type":"dog","price":249.99}\n'
    assert ok.response_override.status is None
    assert not ok.response_override


def test_doc_request_header_override() -> None:
    inp = TemplateInput(b"", [("header1", "header1Val"), ("header2", "header2Val")])
    out = MappingTemplate(DOC_OVERRIDE_HEADERS).render(inp)
    assert out.body == "{}\n"
    # The guide's log: "Endpoint request headers: {header3=header1Valheader2Val, ..., header1=foo"
    assert out.request_override.header == {"header3": "header1Valheader2Val", "header1": "foo"}
    assert out.request_override.querystring == {}
    assert out.request_override.path == {}


def test_overrides_are_final() -> None:
    # "An override may only be applied to each parameter once ... 5XX responses".
    with pytest.raises(TemplateError, match="set twice") as ctx:
        body_of("#set($context.responseOverride.status = 400)\n#set($context.responseOverride.status = 401)")
    assert ctx.value.status == 500
    assert ctx.value.line == 2
    with pytest.raises(TemplateError, match="set twice"):
        body_of("#set($context.requestOverride.header.a = 'x')#set($context.requestOverride.header.a = 'y')")
    # The recommended pattern: a variable, and one override at the end.
    out = MappingTemplate(
        "#set($s = 200)#if(true)#set($s = 404)#end#set($context.responseOverride.status = $s)"
    ).render()
    assert out.response_override.status == 404


def test_all_override_kinds() -> None:
    tpl = """#set($context.requestOverride.header.X-Trace = "t-$context.requestId")
#set($context.requestOverride.header.multi = ["1header", "2header"])
#set($context.requestOverride.querystring.q = 5)
#set($context.requestOverride.path.petId = "7")
#set($context.responseOverride.header.Cache-Control = "no-store")
#set($context.responseOverride.status = "201")
done"""
    out = MappingTemplate(tpl).render(TemplateInput(), {"requestId": "r1"})
    assert out.body == "done"
    assert out.request_override.to_dict() == {
        "header": {"X-Trace": "t-r1", "multi": ["1header", "2header"]},
        "querystring": {"q": "5"},
        "path": {"petId": "7"},
    }
    assert out.response_override.to_dict() == {"status": 201, "header": {"Cache-Control": "no-store"}}
    # Reading an override before it is set: null.
    assert body_of("[$context.responseOverride.status][$context.requestOverride.header.x]") == "[][]"


@pytest.mark.parametrize("status", ["'abc'", "99", "600", "true"])
def test_invalid_status_override(status: str) -> None:
    with pytest.raises(TemplateError, match="not an HTTP status"):
        body_of(f"#set($context.responseOverride.status = {status})")


# ------------------------------------------------------------------------ #foreach limit
def test_foreach_stops_after_1000_iterations() -> None:
    out = body_of("#foreach($i in [1..1500])$i#if($foreach.hasNext),#end#end")
    items = out.split(",")
    # 1,000 items; the 1,000th still sees hasNext (there are more), as in Velocity/AWS.
    assert items[:-1] == [str(i) for i in range(1, 1001)] and items[-1] == ""
    assert body_of("#foreach($i in [1..1000])$i#if($foreach.hasNext),#end#end").split(",")[-1] == "1000"


def test_foreach_limit_on_a_payload_array() -> None:
    body = orjson.dumps({"items": [{"n": i} for i in range(1200)]})
    out = body_of("#set($n = 0)#foreach($x in $input.path('$.items'))#set($n = $n + 1)#end$n", body)
    assert out == "1000"
    out = body_of("#foreach($x in $input.path('$.items'))#set($last = $x.n)#end$last $velocityCount", body)
    assert out == "999 "  # the 1000th element (n=999); $velocityCount only inside the loop


def test_foreach_limit_is_per_loop_and_all_loops_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    out = body_of("#set($n = 0)#foreach($i in [1..3])#foreach($j in [1..1200])#set($n = $n + 1)#end#end$n")
    assert out == "3000"
    monkeypatch.setattr(_engine, "MAX_ITERATIONS", 5000)
    with pytest.raises(TemplateError, match="more than 5000 #foreach iterations"):
        body_of("#foreach($i in [1..10])#foreach($j in [1..1000])#end#end")


def test_foreach_variables() -> None:
    tpl = (
        "#foreach($x in ['a', 'b', 'c'])"
        "$velocityCount:$foreach.count:$foreach.index:$x:$foreach.first:$foreach.last;#end"
    )
    assert body_of(tpl) == "1:1:0:a:true:false;2:2:1:b:false:false;3:3:2:c:false:true;"
    # A map iterates over its values (Java Velocity), keySet() over its keys.
    assert (
        body_of("#set($m = {'a': 1, 'b': 2})#foreach($v in $m)$v#end|#foreach($k in $m.keySet())$k#end")
        == "12|ab"
    )
    # Nothing to iterate: null, a string, a number.
    assert body_of("#foreach($x in $nothing)x#end#foreach($x in 'abc')x#end#foreach($x in 5)x#end.") == "."


def test_set_inside_a_loop_is_visible_after_it_and_break() -> None:
    assert body_of("#foreach($i in [1..3])#set($last = $i)#end$last") == "3"
    assert body_of("#foreach($i in [1..5])#if($i == 3)#break#end$i#end.") == "12."
    assert body_of("a#stop b") == "a"


# ------------------------------------------------------------------------ Java methods
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("$s.length()", "13"),
        ("$s.toLowerCase()", " hello, world"),
        ("$s.toUpperCase()", " HELLO, WORLD"),
        ("$s.trim()", "Hello, World"),
        ("$s.replace('l', 'L')", " HeLLo, WorLd"),
        ("$s.replaceAll('[aeiou]', '*')", " H*ll*, W*rld"),
        ("$s.replaceAll('(\\w+), (\\w+)', '$2 $1')", " World Hello"),
        ("$s.replaceFirst('l', '_')", " He_lo, World"),
        ("$s.substring(1, 6)", "Hello"),
        ("$s.substring(8)", "World"),
        ("$s.indexOf('o')", "5"),
        ("$s.indexOf('z')", "-1"),
        ("$s.lastIndexOf('o')", "9"),
        ("$s.contains('World')", "true"),
        ("$s.startsWith(' He')", "true"),
        ("$s.endsWith('x')", "false"),
        ("$s.trim().split(', ')", "[Hello, World]"),
        ("$s.trim().split(',').size()", "2"),
        ("$s.split('o')", "[ Hell, , W, rld]"),
        ("#set($t = 'a,b,,')$t.split(',')", "[a, b]"),
        ("$s.equals(' Hello, World')", "true"),
        ("$s.equals(1)", "false"),
        ("$s.equalsIgnoreCase(' HELLO, WORLD')", "true"),
        ("$s.isEmpty()", "false"),
        ("#set($e = '')$e.isEmpty()", "true"),
        ("$s.charAt(1)", "H"),
        ("$s.matches('.*World')", "true"),
        ("$s.concat('!')", " Hello, World!"),
        ("$s.toString()", " Hello, World"),
        ("$m.keySet()", "[a, b]"),
        ("$m.get('b')", "x"),
        ("$m.containsKey('a')", "true"),
        ("$m.containsKey('z')", "false"),
        ("$m.size()", "2"),
        ("$m.isEmpty()", "false"),
        ("$m.values()", "[1, x]"),
        ("$m", "{a=1, b=x}"),
        ("$m.entrySet()", "[a=1, b=x]"),
        ("$l", "[1, two, 3.5, true]"),
        ("$l.size()", "4"),
        ("$l.get(1)", "two"),
        ("$l[0]", "1"),
        ("[$l[9]]", "[]"),
        ("$l.contains('two')", "true"),
        ("$l.indexOf(3.5)", "2"),
        ("$l.isEmpty()", "false"),
        ("$l.subList(1, 3)", "[two, 3.5]"),
    ],
)
def test_java_methods(expr: str, expected: str) -> None:
    pre = "#set($s = ' Hello, World')#set($m = {'a': 1, 'b': 'x'})#set($l = [1, 'two', 3.5, true])"
    assert body_of(pre + expr) == expected


def test_list_and_map_mutation() -> None:
    tpl = (
        "#set($l = [])#set($ignore = $l.add('a'))#set($ignore = $l.add('b'))$l.size() $l "
        "#set($m = {})#set($ignore = $m.put('k', 'v'))$m.k #set($m.k2 = 'w')$m"
    )
    assert body_of(tpl) == "2 [a, b] v {k=v, k2=w}"


def test_unknown_methods_and_properties_are_null() -> None:
    assert body_of("#set($s = 'x')[$s.noSuchMethod()][$s.noSuchProperty][$undefined.foo.bar()]") == "[][][]"


@pytest.mark.parametrize(
    "expr",
    [
        "$input.__class__",
        "$input.__class__.__init__.__globals__",
        "$util.__class__.__mro__",
        "$util.escapeJavaScript.__globals__",
        "$context.__class__",
        "#set($f = '{0.__class__}')$f.format($input)",
        "$input.vtl_path('$')",
        "$input.document()",
        "$input.body.__len__()",
        "$stageVariables.__class__.__subclasses__()",
    ],
)
def test_python_attributes_are_not_reachable(expr: str) -> None:
    # APPSEC: only map entries, Java methods and $input / $util's documented methods.
    assert body_of(f"[{expr}]", b'{"a": 1}', context={"requestId": "r"}) == "[]"


@pytest.mark.parametrize(
    "directive", ["#evaluate('$input.body')", "#include('/etc/passwd')", "#parse('x.vtl')"]
)
def test_evaluate_include_parse_are_rejected_at_parse_time(directive: str) -> None:
    with pytest.raises(TemplateError, match="is not supported") as ctx:
        MappingTemplate("line one\n  " + directive)
    assert ctx.value.line == 2


# ------------------------------------------------------------------------ toString / operators
def test_values_print_as_java_does() -> None:
    body = b'{"a": {"b": [1, {"c": "d"}], "e": null, "f": 1.5, "g": 10000000.0, "h": 1e-5, "t": true}}'
    assert (
        body_of("$input.path('$.a')", body) == '{b=[1,{"c":"d"}], e=null, f=1.5, g=1.0E7, h=1.0E-5, t=true}'
    )
    assert body_of("$input.path('$.a.b')", body) == '[1,{"c":"d"}]'  # a JSON array prints as JSON
    assert body_of("$input.path('$.a.b')[1]", body) == "{c=d}"
    assert body_of("$input.path('$.a.f') $input.path('$.a.t') [$input.path('$.a.e')]", body) == "1.5 true []"
    assert (
        body_of("#set($x = 2.0 * 3)$x #set($y = 7 / 2)$y #set($z = -7 / 2)$z #set($w = -7 % 3)$w")
        == "6.0 3 -3 -1"
    )


def test_operators_follow_velocity() -> None:
    assert body_of("#set($x = 'a' + 1)$x") == "a1"
    assert body_of("#set($x = 1 + 'a')$x") == "1a"
    assert body_of("#set($x = 1 / 0)[$x]") == "[]"
    assert body_of("#if(1 == '1')eq#{else}ne#end") == "eq"  # unrelated types: compared as strings
    assert body_of("#if('a' < 1)lt#{else}no#end") == "no"
    assert body_of("#if($nothing == $null)both null#end") == "both null"
    assert body_of("#if(3 > 2 && 'b' > 'a')yes#end") == "yes"
    assert body_of("#set($n = 5)#if($n >= 5 and $n le 5)five#end") == "five"


def test_undefined_references() -> None:
    # airspeed-ext's recorded AWS behaviour: an undefined reference renders as nothing, and is
    # true in #if ("test_if_statement_considers_None_to_be_truthy").
    assert body_of("a$nothing.b$!quiet${braced}c") == "ac"
    assert body_of("#if($nothing)yes#{else}no#end") == "yes"
    assert body_of("${nothing|'default'}") == "default"


def test_string_size_is_bounded() -> None:
    with pytest.raises(TemplateError, match="string longer than"):
        body_of('#set($s = "x")#foreach($i in [1..40])#set($s = "$s$s")#end')


# ------------------------------------------------------------------------ $input
def test_jsonpath_expressions() -> None:
    body = orjson.dumps(
        {
            "store": {
                "book": [
                    {"title": "A", "price": 8.95, "isbn": "1"},
                    {"title": "B", "price": 12.99},
                    {"title": "C", "price": 22.99, "isbn": "3"},
                ],
                "name": "shop",
                "a.b": "dotted",
            }
        }
    )
    cases = {
        "$.store.name": '"shop"',
        "$['store']['name']": '"shop"',
        "$['store']['a.b']": '"dotted"',
        "store.name": '"shop"',
        "$.store.book[0].title": '"A"',
        "$.store.book[-1].title": '"C"',
        "$.store.book[*].title": '["A","B","C"]',
        "$.store.book[0,2].title": '["A","C"]',
        "$.store.book[1:].title": '["B","C"]',
        "$..title": '["A","B","C"]',
        "$..book[1].price": "[12.99]",
        "$.store.book[?(@.price < 10)].title": '["A"]',
        "$.store.book[?(@.isbn)].title": '["A","C"]',
        "$.store.book[?(!@.isbn)].title": '["B"]',
        "$.store.book[?(@.price > 10 && @.title != 'C')].title": '["B"]',
        "$.store.book[?(@.title =~ /[ab]/i)].title": '["A","B"]',
        "$.store.missing": "null",
        "$.store.book[5]": "null",
        "$.store.book[*].missing": "[]",
    }
    for path, expected in cases.items():
        assert body_of(f'$input.json("{path}")', body) == expected, path
    assert body_of("$input.path('$.store').name $input.path('$').store.book.size()", body) == "shop 3"
    assert body_of("[$input.path('$.store.missing')]", body) == "[]"


@pytest.mark.parametrize("path", ["$.a[", "$..", "$.a[?(@.b <)]", "$.a.length()", "$[1:2:0]"])
def test_invalid_jsonpath(path: str) -> None:
    with pytest.raises(JsonPathError):
        compile_path(path)
    with pytest.raises(TemplateError, match="invalid JSONPath"):
        body_of(f"$input.json('{path}')", b"{}")


def test_empty_and_invalid_payloads() -> None:
    # An empty payload reads as {} (AWS sends {} to a Lambda function for a GET).
    assert body_of("$input.json('$')|$input.path('$').size()|[$input.body]") == "{}|0|[]"
    with pytest.raises(InvalidJsonBody) as ctx:
        body_of("\n  $input.json('$')", b"not json")
    assert ctx.value.status == 400
    assert ctx.value.line == 2 and ctx.value.column == 3
    assert ctx.value.aws_message.startswith("Could not parse request body into json: ")
    # $input.body does not parse: any payload is fine.
    assert body_of("$input.body", b"not json") == "not json"
    assert body_of("$input.body", "caf\u00e9".encode()) == "caf\u00e9"
    # JSON integers beyond 64 bits stay exact.
    big = b'{"n": 123456789012345678901234567890, "f": 1.5}'
    assert body_of("$input.json('$')", big) == '{"n":123456789012345678901234567890,"f":1.5}'
    # ... and so do those just beyond the 64-bit range on either side (19 and 20 digits), which
    # orjson would read as floats.
    for edges in (
        b"[-9223372036854775809, 9223372036854775808]",
        b"[-9223372036854775808, 18446744073709551615, 18446744073709551616]",
    ):
        assert body_of("$input.json('$')", edges) == edges.decode().replace(" ", "")


def test_input_params() -> None:
    inp = TemplateInput(
        b"",
        [("X-Name", "from-header"), ("Accept", "a"), ("accept", "b")],
        "name=from-query&only=q&only=q2&sp=a+b%2Bc",
        {"name": "from-path"},
    )
    t = MappingTemplate(
        "$input.params('name')|$input.params('only')|$input.params('x-name')|$input.params('ACCEPT')"
        "|$input.params('sp')|[$input.params('missing')]|$input.params().header.size()"
        "|$input.params().querystring"
    )
    assert t.render(inp).body == "from-path|q2|from-header|b|a b+c|[]|2|{name=from-query, only=q2, sp=a b+c}"
    pairs = TemplateInput(b"", (), [("a", "1"), ("a", "2")])
    assert MappingTemplate("$input.params('a')").render(pairs).body == "2"


# ------------------------------------------------------------------------ $util
@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ("plain", "plain"),
        ("it's", "it\\'s"),
        ('say "hi"', 'say \\"hi\\"'),
        ("a\\b", "a\\\\b"),
        ("</script>", "<\\/script>"),
        ("tab\there\nnew\rline\fform\bback", "tab\\there\\nnew\\rline\\fform\\bback"),
        ("\x01\x1f", "\\u0001\\u001F"),
        ("caf\u00e9 \u20ac", "caf\\u00E9 \\u20AC"),
        ("\U0001f600", "\\uD83D\\uDE00"),
    ],
)
def test_escape_javascript(value: str, escaped: str) -> None:
    # Apache Commons Lang 2 StringEscapeUtils.escapeJavaScript, which AWS's $util uses.
    inp = TemplateInput(orjson.dumps({"v": value}))
    assert MappingTemplate("$util.escapeJavaScript($input.path('$.v'))").render(inp).body == escaped


def test_util_functions() -> None:
    assert body_of("$util.urlEncode('a b&c=d/é*~.-_')") == "a+b%26c%3Dd%2F%C3%A9*%7E.-_"
    assert body_of("$util.urlDecode('a+b%26c%3Dd%2F%C3%A9')") == "a b&c=d/é"
    assert body_of("$util.base64Encode('héllo')") == base64.b64encode("héllo".encode()).decode()
    assert body_of("$util.base64Decode('aMOpbGxv')") == "héllo"
    assert body_of("$util.base64Decode('aMOpbA')") == "hél"  # padding is optional, as in Java
    assert (
        body_of("$util.parseJson('[1, 2, 3]').size() $util.parseJson('{\"a\": {\"b\": true}}').a.b")
        == "3 true"
    )
    assert body_of("[$util.escapeJavaScript($nothing)]") == "[]"
    with pytest.raises(TemplateError, match="base64Decode"):
        body_of("$util.base64Decode('***')")
    with pytest.raises(TemplateError, match="parseJson"):
        body_of("$util.parseJson('{nope')")


# ------------------------------------------------------------------------ $context, $stageVariables
DOC_CONTEXT = """{
    "stage" : "$context.stage",
    "request_id" : "$context.requestId",
    "api_id" : "$context.apiId",
    "resource_path" : "$context.resourcePath",
    "resource_id" : "$context.resourceId",
    "http_method" : "$context.httpMethod",
    "source_ip" : "$context.identity.sourceIp",
    "user-agent" : "$context.identity.userAgent",
    "account_id" : "$context.identity.accountId",
    "api_key" : "$context.identity.apiKey",
    "caller" : "$context.identity.caller",
    "user" : "$context.identity.user",
    "user_arn" : "$context.identity.userArn"
}"""


def test_doc_context_example_from_an_event() -> None:
    event = {
        "resource": "/",
        "path": "/",
        "httpMethod": "GET",
        "headers": {"User-Agent": "curl/7.84.0"},
        "multiValueHeaders": {"User-Agent": ["curl/7.84.0"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": {"v": "1"},
        "requestContext": {
            "accountId": "111122223333",
            "apiId": "abcd1234",
            "httpMethod": "GET",
            "identity": {
                "accountId": "111122223333",
                "apiKey": "MyTestKey",
                "caller": "ABCD-0000-12345",
                "sourceIp": "192.0.2.1",
                "user": "ABCD-0000-12345",
                "userAgent": "curl/7.84.0",
                "userArn": "arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar",
            },
            "requestId": "abcdefg-000-000-0000-abcdefg",
            "resourceId": "efg567",
            "resourcePath": "/",
            "stage": "prod",
        },
        "body": None,
        "isBase64Encoded": False,
    }
    inp, context, stage_variables = input_from_event(event)
    out = MappingTemplate(DOC_CONTEXT).render(inp, context, stage_variables)
    # The guide's output (shown as a JavaScript object literal there).
    assert orjson.loads(out.body) == {
        "stage": "prod",
        "request_id": "abcdefg-000-000-0000-abcdefg",
        "api_id": "abcd1234",
        "resource_path": "/",
        "resource_id": "efg567",
        "http_method": "GET",
        "source_ip": "192.0.2.1",
        "user-agent": "curl/7.84.0",
        "account_id": "111122223333",
        "api_key": "MyTestKey",
        "caller": "ABCD-0000-12345",
        "user": "ABCD-0000-12345",
        "user_arn": "arn:aws:sts::111122223333:assumed-role/Admin/carlos-salazar",
    }
    assert stage_variables == {"v": "1"}


def test_input_from_event() -> None:
    event = {
        "resource": "/items/{id}",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Single": "only"},
        "multiValueHeaders": {"Content-Type": ["application/json"], "X-Multi": ["a", "b"]},
        "queryStringParameters": {"q": "2"},
        "multiValueQueryStringParameters": {"q": ["1", "2"]},
        "pathParameters": {"id": "9"},
        "stageVariables": None,
        "requestContext": {"requestId": "rid", "identity": {"sourceIp": "198.51.100.7"}},
        "body": base64.b64encode(b'{"k": "v"}').decode(),
        "isBase64Encoded": True,
    }
    inp, context, stage_variables = input_from_event(event)
    assert inp.body == b'{"k": "v"}'
    assert inp.headers == [
        ("Content-Type", "application/json"),
        ("X-Multi", "a"),
        ("X-Multi", "b"),
        ("X-Single", "only"),
    ]
    assert list(inp.query_pairs()) == [("q", "1"), ("q", "2")]
    assert context == {
        "requestId": "rid",
        "identity": {"sourceIp": "198.51.100.7"},
        "httpMethod": "POST",
        "resourcePath": "/items/{id}",
    }
    assert stage_variables == {}
    tpl = (
        "$input.path('$.k') $input.params('id') $input.params('q') $input.params('x-multi') "
        "$context.identity.sourceIp"
    )
    assert MappingTemplate(tpl).render(inp, context).body == "v 9 2 b 198.51.100.7"
    with pytest.raises(ValueError, match="headers"):
        input_from_event({"headers": "nope"})


def test_stage_variables_and_error_context() -> None:
    tpl = "$stageVariables.env ${stageVariables['env']} $stageVariables.get('env') [$stageVariables.none]"
    assert body_of(tpl, stage_variables={"env": "prod"}) == "prod prod prod []"
    # A gateway response template (AWS: $context.error.messageString is the quoted message).
    gw = MappingTemplate('{ "message": $context.error.messageString, "type": "$context.error.responseType" }')
    out = gw.render(TemplateInput(), error_context('Missing "token"', "UNAUTHORIZED"))
    assert out.body == '{ "message": "Missing \\"token\\"", "type": "UNAUTHORIZED" }'
    assert orjson.loads(out.body) == {"message": 'Missing "token"', "type": "UNAUTHORIZED"}


def make_request(authorizer: dict[str, Any] | None = None) -> Request:
    api = ApiRuntime(
        "api", "abcdef1234", "rest", replies.NOT_FOUND, region="us-east-1", account_id="123456789012"
    )
    stage = StageRuntime(api, "prod", {"env": "prod"}, RouteTrie())
    route = RouteRuntime(
        "GET /pets/{id}",
        api,
        stage,
        MockRuntime(replies.LocalReply(200)),
        method="GET",
        template="/pets/{id}",
    )
    req = Request(
        route,
        "GET",
        "/prod/pets/1",
        "/pets/1",
        "",
        [("Host", "abcdef1234.execute-api.us-east-1.amazonaws.com"), ("User-Agent", "curl/8.5.0")],
        b"",
        "192.0.2.1",
        "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
        1428582896000,
        {"id": "1"},
        "abcdef1234.execute-api.us-east-1.amazonaws.com",
    )
    req.authorizer = authorizer
    return req


def test_context_from_request_is_the_events_request_context(monkeypatch: pytest.MonkeyPatch) -> None:
    req = make_request({"principalId": "user-1", "role": "admin"})
    calls: list[int] = []
    build = events._context_v1

    def counting(*args: Any, **kw: Any) -> dict[str, Any]:
        calls.append(1)
        return build(*args, **kw)

    monkeypatch.setattr(events, "_context_v1", counting)
    template = MappingTemplate(
        "$context.requestId $context.stage $context.resourcePath $context.httpMethod $context.path "
        "$context.identity.sourceIp $context.identity.userAgent $context.authorizer.principalId "
        "$context.authorizer.role $context.requestTime $context.error.responseType"
    )
    ctx = context_from_request(req, {"error": {"responseType": "DEFAULT_4XX"}})
    out = render(template, TemplateInput(), ctx, {"env": "prod"})
    assert out.body == (
        "c6af9ac6-7b61-11e6-9a41-93e8deadbeef prod /pets/{id} GET /prod/pets/1 192.0.2.1 curl/8.5.0 "
        "user-1 admin 09/Apr/2015:12:34:56 +0000 DEFAULT_4XX"
    )
    assert calls == [1]  # built once, on the first lookup
    # The same values as the Lambda event's requestContext.
    event_ctx = events.build_event_v1(req)["requestContext"]
    assert {k: v for k, v in ctx.items() if k != "error"} == event_ctx
    # A template that does not read $context does not build it.
    calls.clear()
    MappingTemplate("static").render(TemplateInput(), context_from_request(req))
    assert calls == []


# ------------------------------------------------------------------------ errors, parse once
def test_syntax_errors_have_line_and_column() -> None:
    with pytest.raises(TemplateError) as ctx:
        MappingTemplate('{\n  "a": "$input.path(\'$.a\')",\n  #if($x\n}', name="POST /pets")
    assert ctx.value.line == 3
    assert ctx.value.column is not None
    assert str(ctx.value).startswith("POST /pets: line 3, column ")
    assert isinstance(ctx.value, ValueError)
    with pytest.raises(TemplateError, match="line 1, column"):
        MappingTemplate("#foreach($x in)")


def test_runtime_errors_have_line_and_column() -> None:
    template = MappingTemplate("line1\n#set($s = 'abc')\n  $s.substring(10)", name="t")
    with pytest.raises(TemplateError) as ctx:
        template.render()
    assert ctx.value.line == 3 and ctx.value.column == 3
    assert ctx.value.status == 500
    assert "IndexError" in str(ctx.value) and "$s.substring(10)" in str(ctx.value)


def test_parsed_once_rendered_many_times_without_leaking_state() -> None:
    template = MappingTemplate(
        "[$seen]#set($seen = true)#macro(m $a)<$a>#end#m($input.path('$.v'))"
        "#set($context.responseOverride.status = 201)"
    )
    root = template._root
    for v in ("a", "b"):
        out = template.render(TemplateInput(orjson.dumps({"v": v})), {"requestId": "r"}, {})
        assert out.body == f"[]<{v}>"
        assert out.response_override.status == 201
    assert template._root is root
    # The caller's mappings are not modified.
    ctx: dict[str, Any] = {"requestId": "r"}
    variables = {"env": "x"}
    MappingTemplate("#set($context.extra = 1)#set($stageVariables.env = 'y')$context.extra").render(
        TemplateInput(), ctx, variables
    )
    assert ctx == {"requestId": "r"} and variables == {"env": "x"}
