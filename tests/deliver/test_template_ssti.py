"""Server-side template injection and exhaustion: every attack is a clear RenderError,
no code runs, and no render takes more than a bounded amount of work or memory."""

from __future__ import annotations

import time

import pytest

from momently.decide.spec import Message, OfferSpec
from momently.deliver.errors import RenderError
from momently.deliver.sandbox import GuardedSandbox
from momently.deliver.templates import Renderer
from momently.state.profile import Profile, Stamped

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch /tmp/pwned') }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ request.application.__globals__ }}",
    "{{ profile.__class__ }}",
    "{{ track.__globals__ }}",
    "{{ track.__code__ }}",
    "{{ '{0.__class__.__mro__}'.format(1) }}",
    "{{ '{0.__globals__}'.format(track) }}",
    "{{ ('{0.__class__}'|attr('format'))(1) }}",
    "{{ '{0.__class__}'.format_map({'0': 1}) }}",
    "{{ profile|attr('__class__') }}",
    "{% set x = profile.traits.update({'a': 1}) %}",
    "{{ profile.traits.pop('plan') }}",
    "{{ config }}",
    "{{ lipsum(100000) }}",
]

EXHAUSTION = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
    "{{ range(10**9)|list }}",
    "{{ 'a' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ 'x'.center(1000000000) }}",
    "{{ 'x'.ljust(1000000000) }}",
    "{{ 'x'|center(1000000000) }}",
    "{{ 'x\tx'.expandtabs(100000000) }}",
    "{{ ('a' * 1000).replace('', 'b' * 1000) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:>{w}}'.format(1, w=999999999) }}",
    "{{ 10 ** 100000000 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s|length }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{{ ('a' * 150000)|wordwrap(1)|length }}",
]


def render(body: str, traits: dict[str, object] | None = None) -> str:
    offer = OfferSpec(id="o", title="T", messages={"push": Message(body=body)})
    profile = Profile(
        customer_id="c1",
        created=(0, ""),
        traits={k: Stamped(v, 0, "m") for k, v in (traits or {"plan": "gold"}).items()},
    )
    return Renderer().render(offer, "push", profile=profile, moment=None).text


@pytest.mark.parametrize("body", ESCAPES)
def test_escapes_from_the_sandbox_fail_clearly(body: str) -> None:
    with pytest.raises(RenderError) as failed:
        render(body)
    assert failed.value.reason.startswith("push.body:")


@pytest.mark.parametrize("body", EXHAUSTION)
def test_exhaustion_fails_fast_with_a_reason(body: str) -> None:
    started = time.process_time()
    with pytest.raises(RenderError) as failed:
        render(body)
    assert failed.value.reason.startswith("push.body:")
    # bounded work: far under a second of CPU (the budget, not the attack, decides)
    assert time.process_time() - started < 5


def test_customer_data_is_data_never_a_template() -> None:
    hostile = "{{ cycler.__init__.__globals__.os.system('id') }} {% for i in x %}{% endfor %}"
    assert render("{{ profile.plan }}", {"plan": hostile}) == hostile


def test_ordinary_templates_still_render() -> None:
    body = (
        "{% for p in ['a', 'b'] %}{{ p|upper }}{{ loop.index }}{% endfor %} "
        "{{ '%.2f' % 3.14159 }} {{ '{:>5}'.format('x') }} {{ 'ab' ~ 'cd' }} {{ 2 ** 10 }} "
        "{{ 'x'.center(5) }}|{{ cycler('odd', 'even').next() }} {{ [1, 2] + [3] }}"
    )
    assert render(body) == "A1B2 3.14     x abcd 1024   x  |odd [1, 2, 3]"


def test_the_budget_is_per_render() -> None:
    env = GuardedSandbox(max_ops=100)
    template = env.from_string("{% for i in range(40) %}{{ i }}{% endfor %}")
    for _ in range(5):  # 40 iterations + calls each time: within the budget every time
        assert template.render().endswith("39")
    with pytest.raises(Exception, match="over 100 operations"):
        env.from_string("{% for i in range(200) %}{% endfor %}").render()
