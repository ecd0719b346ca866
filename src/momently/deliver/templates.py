"""Rendering an offer's message for one customer: sandboxed Jinja2, strict about names.

Every text field of a :class:`~momently.decide.spec.Message` (``title``,
``subject``, ``body``, ``url``) is a Jinja2 template, rendered in Jinja's
immutable sandbox with :class:`~jinja2.StrictUndefined`, so a name that is not
there fails the render instead of printing nothing. The variables:

* ``profile`` — the customer's traits, flattened (``profile.plan``), plus
  ``customer_id``, ``user_id``, ``email``, ``phone``, ``locale``, ``timezone``,
  ``first_name``/``last_name`` when a trait gives them (``firstName``,
  ``first_name`` or ``name``), and all traits again under ``profile.traits``;
* ``moment`` — ``id``, ``name``, ``kind``, ``confidence``, ``at_ms``,
  ``expires_ms``, ``context``, ``details``;
* ``offer`` — ``id``, ``title``, ``value``, ``pillars``, ``purpose``;
* ``links`` — ``url`` (the tracked link to the message's ``url``),
  ``unsubscribe``, ``open_pixel``; and ``track(url)`` wraps any other link.

Use ``{{ profile.first_name | default("there") }}`` for a name that may be missing.

**Locale variants.** An offer's ``messages`` may hold, beside ``email``, keys
such as ``email@fr`` or ``email@fr-CA``. For a customer whose locale is
``fr_CA`` the first of ``email@fr-ca``, ``email@fr``, ``email`` that exists is
used (matching ignores case; ``_`` and ``-`` are the same).

**HTML.** Email gets a text part (the body as written) and an HTML part: the
text, escaped as a whole and split into paragraphs, placed in a layout
template rendered with autoescape on (:data:`DEFAULT_LAYOUT`, or the brand's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import jinja2
from markupsafe import Markup, escape

from momently.decide.spec import Message, OfferSpec
from momently.deliver.errors import RenderError
from momently.deliver.sandbox import GuardedSandbox
from momently.moments.model import Moment
from momently.state.profile import Profile

MAX_OUTPUT: Final = 200_000
_FIELDS: Final = ("url", "title", "subject", "body")

DEFAULT_LAYOUT: Final = """<!doctype html>
<html lang="{{ locale or 'en' }}"><head><meta charset="utf-8">
<title>{{ subject or offer.title }}</title></head>
<body style="font-family:sans-serif;max-width:600px;margin:auto">
{{ body }}
{% if links.url %}<p><a href="{{ links.url }}">{{ offer.title or 'Open' }}</a></p>{% endif %}
{% if links.unsubscribe %}<p style="font-size:12px;color:#666">
<a href="{{ links.unsubscribe }}">Unsubscribe</a></p>{% endif %}
{% if links.open_pixel %}<img src="{{ links.open_pixel }}" width="1" height="1" alt="">{% endif %}
</body></html>
"""


@dataclass(frozen=True)
class Rendered:
    """A message rendered for one customer; ``url`` is the untracked target."""

    text: str
    subject: str | None = None
    title: str | None = None
    html: str | None = None
    url: str | None = None
    variant: str = ""  # the messages key used, e.g. "email@fr"


@dataclass(frozen=True)
class Links:
    """The tracking links one message can use; ``track`` wraps a target URL."""

    unsubscribe: str | None = None
    open_pixel: str | None = None
    track: Callable[[str], str] = str


def select_message(
    messages: Mapping[str, Message], channel: str, locale: str | None
) -> tuple[str, Message] | None:
    """The most specific variant of ``channel``'s message for ``locale``, or None.

    >>> m = {"email": Message(body="hi"), "email@fr": Message(body="salut")}
    >>> select_message(m, "email", "fr_CA")[0], select_message(m, "email", "de")[0]
    ('email@fr', 'email')
    """
    wanted = [channel]
    if locale:
        parts = locale.replace("_", "-").lower().split("-")
        wanted = [f"{channel}@{'-'.join(parts[:n])}" for n in range(len(parts), 0, -1)] + wanted
    lowered = {key.lower(): key for key in messages}
    for name in wanted:
        key = lowered.get(name.lower())
        if key is not None:
            return key, messages[key]
    return None


def profile_vars(profile: Profile | None) -> dict[str, Any]:
    """The ``profile`` variable: flattened traits plus addresses and names."""
    if profile is None:
        return {"traits": {}}
    traits = {name: stamped.value for name, stamped in profile.traits.items()}
    out: dict[str, Any] = dict(traits)
    name = traits.get("name")
    first = traits.get("firstName") or traits.get("first_name")
    last = traits.get("lastName") or traits.get("last_name")
    if not first and isinstance(name, str) and name.split():
        first = name.split()[0]
        last = last or " ".join(name.split()[1:]) or None
    for key, value in (("first_name", first), ("last_name", last)):
        if value:
            out[key] = value
    out.update(
        customer_id=profile.customer_id,
        user_id=profile.user_id,
        email=profile.emails[0] if profile.emails else None,
        phone=profile.phones[0] if profile.phones else None,
        locale=profile.locale.value if profile.locale else None,
        timezone=profile.timezone.value if profile.timezone else None,
        traits=traits,
    )
    return out


def moment_vars(moment: Moment | None) -> dict[str, Any]:
    if moment is None:
        return {}
    return {
        "id": moment.moment_id,
        "name": moment.name,
        "kind": moment.kind,
        "confidence": moment.confidence,
        "at_ms": moment.at_ms,
        "expires_ms": moment.expires_ms,
        "context": moment.context,
        "details": moment.details,
    }


def offer_vars(offer: OfferSpec) -> dict[str, Any]:
    return {
        "id": offer.id,
        "title": offer.title,
        "value": offer.value,
        "pillars": list(offer.pillars),
        "purpose": offer.purpose,
    }


def paragraphs(text: str) -> Markup:
    """Plain text as escaped HTML paragraphs.

    >>> str(paragraphs("a <b>\\n\\nc\\nd"))
    '<p>a &lt;b&gt;</p>\\n<p>c<br>\\nd</p>'
    """
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in b.split("\n")))
        for b in blocks
    )


class Renderer:
    """Renders messages; compiled templates are cached by their source."""

    def __init__(self, *, layout: str = DEFAULT_LAYOUT, max_output: int = MAX_OUTPUT) -> None:
        # Jinja's immutable sandbox, bounded in work and memory per render (deliver.sandbox).
        self._text = GuardedSandbox(undefined=jinja2.StrictUndefined)
        self._html = GuardedSandbox(undefined=jinja2.StrictUndefined, autoescape=True)
        self._cache: dict[tuple[bool, str], jinja2.Template] = {}
        self.max_output = max_output
        self._layout = self._compile(layout, html=True, field="layout")

    def _compile(self, source: str, *, html: bool, field: str) -> jinja2.Template:
        template = self._cache.get((html, source))
        if template is None:
            env = self._html if html else self._text
            try:
                template = env.from_string(source)
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(f"{field} line {exc.lineno}: {exc.message}") from exc
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[(html, source)] = template
        return template

    def _run(self, template: jinja2.Template, variables: dict[str, Any], field: str) -> str:
        out: list[str] = []
        size = 0
        try:
            for chunk in template.generate(variables):
                size += len(chunk)
                if size > self.max_output:
                    raise RenderError(f"{field}: output over {self.max_output} characters")
                out.append(chunk)
        except RenderError:
            raise
        except jinja2.TemplateError as exc:
            raise RenderError(f"{field}: {exc.message or type(exc).__name__}") from exc
        except Exception as exc:  # a template can raise anything a filter raises
            raise RenderError(f"{field}: {type(exc).__name__}: {exc}") from exc
        return "".join(out)

    def render(
        self,
        offer: OfferSpec,
        channel: str,
        *,
        profile: Profile | None,
        moment: Moment | None,
        links: Links | None = None,
        locale: str | None = None,
        html: bool = False,
    ) -> Rendered:
        """Render ``offer``'s message for ``channel``; raise RenderError with the reason."""
        links = links or Links()
        person = profile_vars(profile)
        locale = locale or person.get("locale")
        found = select_message(offer.messages, channel, locale)
        if found is None:
            raise RenderError(f"offer {offer.id} has no message for channel {channel}")
        variant, message = found
        variables: dict[str, Any] = {
            "profile": person,
            "moment": moment_vars(moment),
            "offer": offer_vars(offer),
            "channel": channel,
            "locale": locale,
            "links": {"unsubscribe": links.unsubscribe, "open_pixel": links.open_pixel},
            "track": links.track,
        }
        fields: dict[str, str | None] = {}
        for name in _FIELDS:
            source = getattr(message, name)
            if source is None:
                fields[name] = None
                continue
            where = f"{variant}.{name}"
            value = self._run(self._compile(source, html=False, field=where), variables, where)
            fields[name] = value.strip() if name != "body" else value
            if name == "url":
                variables["links"]["url"] = links.track(value.strip()) if value.strip() else None
        variables["links"].setdefault("url", None)
        body = fields["body"] or ""
        page = None
        if html:
            page = self._run(
                self._layout,
                {**variables, "body": paragraphs(body), "subject": fields["subject"]},
                f"{variant}.layout",
            )
        return Rendered(
            text=body,
            subject=fields["subject"],
            title=fields["title"],
            html=page,
            url=fields["url"] or None,
            variant=variant,
        )
