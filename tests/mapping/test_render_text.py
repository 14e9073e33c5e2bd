"""``MappingTemplate.render_text`` and what the compiler decides for it (``fastgw.mapping._compile``).

A template that never reads ``$context`` is ``contextless``: ``render_text`` renders it with the
compiled ``text`` function, without a namespace, a ``$context`` view or override maps; it must
give exactly ``render(...).body``, or the same error. The corpus is ``test_compiled``'s.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from fastgw.mapping import MappingTemplate, TemplateError, TemplateInput, vtl
from fastgw.mapping.vtl import Rendered
from tests.mapping.test_compiled import CONTEXT, CORPUS, INPUTS, STAGE_VARIABLES

EXTRA = [
    # stores nothing reads: computed for their failures, not kept
    "#set($b = $input.path('$'))\n{\"wrapped\": $input.json('$')}",
    "#set($b = $input.path('$.items[0]'))#set($c = 'x')$input.json('$.a')",
    "#set($b = $input.path('$.a'))$b",
    "#foreach($i in [1..2])#set($y = $i)#end$y",
    # JSONPath literals, valid or not
    "$input.path('$.m.k')|$input.json('$.items[1]')|$input.json('items[*].n')|$input.path('$..n')",
    "$input.json('$.[')",
    "$input.path('$[?(@.n > 1)]')",
    "#stop",
    "$stageVariables.env #set($stageVariables.env = 'x')$stageVariables.env",
]


def _outcome(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except TemplateError as ex:
        reason = getattr(ex, "reason", None)
        return ("error", type(ex).__name__, str(ex), ex.line, ex.column, ex.status, reason)


@pytest.mark.parametrize("source", CORPUS + EXTRA)
def test_render_text_is_the_body_of_render(source: str) -> None:
    template = MappingTemplate(source, name="t")
    if "$context" in source or "#macro" in source or "#define" in source:
        assert not template.contextless, source
    for body, headers, query, params in INPUTS:
        variables = dict(STAGE_VARIABLES)
        # A template that is not contextless is rendered in full, with an empty $context.
        context = dict(CONTEXT) if template.contextless else None
        text = _outcome(template.render_text, TemplateInput(body, headers, query, params), variables)
        full = _outcome(template.render, TemplateInput(body, headers, query, params), context, variables)
        if type(full) is Rendered:
            full = full.body
        assert text == full, (source, body)
        assert variables == STAGE_VARIABLES  # never changed, whatever the template sets


def test_most_of_the_corpus_is_contextless() -> None:
    # $context, #macro / #define and nodes the compiler delegates (ranges, interpolated strings,
    # long expressions) are not; the rest is.
    contextless = [s for s in CORPUS if MappingTemplate(s).contextless]
    assert len(contextless) >= len(CORPUS) // 2
    assert not any("$context" in s for s in contextless)


def test_the_bench_templates_are_contextless_and_lean() -> None:
    request = MappingTemplate(
        '{"id": "$input.params(\'id\')", '
        '"ua": "$util.escapeJavaScript($input.params().header.get(\'User-Agent\'))"}'
    )
    response = MappingTemplate("#set($b = $input.path('$'))\n{\"wrapped\": $input.json('$')}")
    for template in (request, response):
        assert template.contextless and template._text is not None
    source = response._fn.__source__
    # The unread #set keeps its computation (a body that is not JSON fails), stores nothing.
    assert "_set_top" not in source and "_LocalNamespace" not in source
    assert ".document()" in source and "_to_json(" in source
    assert response._fn.__needs__ == frozenset({"input"})
    with pytest.raises(vtl.InvalidJsonBody):
        response.render_text(TemplateInput(b"not json"))
    inp = TemplateInput(b"", [("User-Agent", "a/b")], "", {"id": "7"})
    assert request.render_text(inp) == '{"id": "7", "ua": "a\\/b"}'


def test_a_read_store_is_kept_and_context_is_needed_when_read() -> None:
    kept = MappingTemplate("#set($b = $input.path('$.a'))$b")
    assert "_set_top(ns, 'b'" in kept._fn.__source__
    assert kept.render_text(TemplateInput(b'{"a": 5}')) == "5"
    uses_context = (
        "$context.requestId",
        "#set($context.responseOverride.status = 201)",
        "#macro(m)x#end#m()",
    )
    for source in uses_context:
        template = MappingTemplate(source)
        assert not template.contextless and template._text is None
    # a template that cannot be compiled is rendered by the tree walk
    walked = MappingTemplate("#foreach($i in [1])" * 12 + "x" + "#end" * 12)
    assert walked._fn is None and walked.render_text(TemplateInput()) == "x"


def test_render_text_without_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vtl, "COMPILE", False)
    template = MappingTemplate("$input.params('id')")
    assert not template.contextless
    assert template.render_text(TemplateInput(path_params={"id": "7"})) == "7"


def _escape_reference(s: str) -> str:
    """Commons Lang's escapeJavaScript by the table alone (no fast path)."""
    s = s.translate(vtl._JS_ESCAPES)
    return vtl._NON_ASCII.sub(vtl._js_unicode, s) if not s.isascii() else s


def test_escape_javascript_fast_path_matches_the_table() -> None:
    rng = random.Random(7)
    alphabet = "ab/\\'\"\x00\x1f\x7f \té\u2028\U0001f600"
    cases = ["fastgw-bench/1.0", "", "plain", "a'b\"c\\d/e", "\x7f", "tab\there"]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(5000)]
    for s in cases:
        assert vtl.escape_javascript(s) == _escape_reference(s), repr(s)
    assert vtl.escape_javascript(None) is None
    assert vtl.escape_javascript(12) == "12"


@pytest.mark.parametrize("body", [b"", b"   ", "", " \n ", b"\n"])
def test_an_empty_or_blank_payload_is_an_empty_object(body: bytes | str) -> None:
    assert TemplateInput(body).document() == {}
    assert MappingTemplate("$input.json('$')").render_text(TemplateInput(body)) == "{}"


def test_a_payload_with_long_integers_keeps_them() -> None:
    inp = TemplateInput(b'{"n": 123456789012345678901234, "s": "x"}')
    assert inp.document() == {"n": 123456789012345678901234, "s": "x"}
    assert TemplateInput(bytearray(b"[1]")).document() == [1]
