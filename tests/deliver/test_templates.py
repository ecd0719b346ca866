"""Templates: sandboxed, strict, per-locale, escaped in HTML; failures are reasons, not mail."""

from __future__ import annotations

import pytest

from momently.decide.spec import Message, OfferSpec
from momently.deliver.errors import RenderError
from momently.deliver.templates import Links, Renderer, select_message
from momently.moments.model import Moment
from momently.state.profile import Profile, Stamped

MOMENT = Moment(
    moment_id="mo-1", customer_id="c1", kind="buy", name="cart-abandoned", confidence=0.8,
    at_ms=1, expires_ms=2, trigger="m-1", source="rules", details={"category": "toasters"},
)  # fmt: skip


def profile(locale: str | None = None, **traits: object) -> Profile:
    return Profile(
        customer_id="c1",
        created=(0, ""),
        traits={k: Stamped(v, 0, "m") for k, v in traits.items()},
        emails=["ada@example.com"],
        locale=Stamped(locale, 0, "m") if locale else None,
    )


def offer(**messages: Message) -> OfferSpec:
    return OfferSpec(id="toaster", title="Toaster", messages=messages)


def test_variables_and_tracked_link() -> None:
    o = offer(
        email=Message(
            subject="{{ profile.first_name }}, your {{ moment.details.category }}",
            body="Hi {{ profile.first_name }} ({{ profile.plan }}) {{ links.url }}",
            url="https://shop.example/{{ offer.id }}?c={{ profile.customer_id }}",
        )
    )
    links = Links(track=lambda url: "https://t.example/c?u=" + url)
    out = Renderer().render(
        o, "email", profile=profile(firstName="Ada", plan="gold"), moment=MOMENT, links=links
    )
    assert out.subject == "Ada, your toasters"
    assert out.text == "Hi Ada (gold) https://t.example/c?u=https://shop.example/toaster?c=c1"
    assert out.url == "https://shop.example/toaster?c=c1"
    assert out.html is None and out.variant == "email"


def test_first_name_from_name_and_default() -> None:
    o = offer(push=Message(body="Hi {{ profile.first_name | default('there') }}"))
    r = Renderer()
    assert r.render(o, "push", profile=profile(name="Ada Lovelace"), moment=None).text == "Hi Ada"
    assert r.render(o, "push", profile=profile(), moment=None).text == "Hi there"


def test_missing_variable_is_a_clear_failure() -> None:
    o = offer(push=Message(body="Hi {{ profile.first_name }}"))
    with pytest.raises(RenderError, match="push.body: 'dict object' has no attribute 'first_name'"):
        Renderer().render(o, "push", profile=profile(), moment=None)


def test_syntax_error_names_field_and_line() -> None:
    o = offer(push=Message(body="line one\n{% if %}"))
    with pytest.raises(RenderError, match=r"push.body line 2: "):
        Renderer().render(o, "push", profile=profile(), moment=None)


def test_sandbox_refuses_unsafe_access() -> None:
    o = offer(push=Message(body="{{ ''.__class__.__mro__[1].__subclasses__() }}"))
    with pytest.raises(RenderError, match="push.body"):
        Renderer().render(o, "push", profile=profile(), moment=None)
    o = offer(push=Message(body="{{ profile.traits.update({'a': 1}) }}"))
    with pytest.raises(RenderError, match="push.body"):
        Renderer().render(o, "push", profile=profile(), moment=None)


def test_runaway_output_is_stopped() -> None:
    o = offer(push=Message(body="{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}"))
    with pytest.raises(RenderError, match="output over 200000 characters"):
        Renderer().render(o, "push", profile=profile(), moment=None)


def test_errors_inside_filters_are_reasons() -> None:
    o = offer(push=Message(body="{{ 1 // 0 }}"))
    with pytest.raises(RenderError, match="ZeroDivisionError"):
        Renderer().render(o, "push", profile=profile(), moment=None)


def test_locale_variants_fall_back() -> None:
    o = offer(
        email=Message(subject="Hello", body="Hello"),
        **{
            "email@fr": Message(subject="Bonjour", body="Bonjour"),
            "email@fr-CA": Message(subject="Allô", body="Allô"),
        },  # fmt: skip
    )
    r = Renderer()
    assert r.render(o, "email", profile=profile("fr_CA"), moment=None).subject == "Allô"
    assert r.render(o, "email", profile=profile("fr-FR"), moment=None).subject == "Bonjour"
    assert r.render(o, "email", profile=profile("de"), moment=None).subject == "Hello"
    assert r.render(o, "email", profile=profile(), moment=None).variant == "email"
    assert r.render(o, "email", profile=profile("de"), moment=None, locale="fr").text == "Bonjour"
    assert select_message(o.messages, "sms", "fr") is None
    with pytest.raises(RenderError, match="no message for channel sms"):
        r.render(o, "sms", profile=profile(), moment=None)


def test_html_part_escapes_everything_from_the_customer() -> None:
    o = offer(
        email=Message(
            subject="<Deal>", body="Hi {{ profile.nick }}\n\nBye", url="https://s.example/"
        )
    )
    links = Links(unsubscribe="https://t.example/u/x", open_pixel="https://t.example/o/x.gif")
    out = Renderer().render(
        o, "email", profile=profile(nick="<script>alert(1)</script>"), moment=None,
        links=links, html=True,
    )  # fmt: skip
    assert out.html is not None
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "<title>&lt;Deal&gt;</title>" in out.html
    assert "<p>Bye</p>" in out.html
    assert 'href="https://s.example/"' in out.html
    assert (
        'href="https://t.example/u/x"' in out.html and 'src="https://t.example/o/x.gif"' in out.html
    )
    assert out.text == "Hi <script>alert(1)</script>\n\nBye"  # the text part is plain text


def test_custom_layout_errors_are_reasons() -> None:
    with pytest.raises(RenderError, match="layout line 1"):
        Renderer(layout="{% for %}")
    o = offer(email=Message(body="x"))
    r = Renderer(layout="{{ profile.missing }}")
    with pytest.raises(RenderError, match="email.layout: 'dict object' has no attribute"):
        r.render(o, "email", profile=profile(), moment=None, html=True)
