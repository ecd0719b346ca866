"""Hypothesis on every parser of outside input: only the documented errors, no writes on refusal.

* **event bodies** over HTTP (``/v1/*``, through the real app): random bytes,
  random JSON, Segment-shaped messages and batches with random damage, each
  sent raw or gzipped (whole, truncated, or with a wrong header): never a 5xx,
  a refusal writes nothing (events, customers, identities unchanged) and a
  200 adds exactly the events it says it accepted;
* **the body pipeline** without HTTP (``decode_body`` → ``decode_batch`` →
  ``decode_message`` → ``normalise``): only :class:`InvalidInput` subclasses;
* **the playbook** (``load_text(Playbook, ...)``, moments *and* decisions): the
  example playbook with random parts replaced, removed or added loads or
  raises :class:`PlaybookError`, nothing else (``tests/moments/test_loader.py``
  fuzzes the moments' ``Book`` with junk text already);
* **templates**: random Jinja sources and profile values render or raise
  :class:`RenderError` (``test_template_ssti.py`` lists the known attacks);
* **tracking tokens**: junk and tampered tokens raise :class:`TokenError`,
  genuine ones verify until they expire; and the ``/t/*`` routes never answer
  5xx nor write for a token that does not verify.

The CI profile runs a modest number of examples per test; ``HYPOTHESIS_PROFILE=fuzz``
(or ``python benchmarks/run.py fuzz``) runs over 100,000 cases in all.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from momently.clock import FakeClock
from momently.config import Settings
from momently.decide.spec import Message, OfferSpec
from momently.deliver.errors import RenderError, TokenError
from momently.deliver.templates import Renderer
from momently.deliver.tracking import TokenSigner
from momently.errors import InvalidInput
from momently.events import MAX_BATCH_BYTES, decode_batch, decode_message, normalise
from momently.ingest.body import decode_body
from momently.moments.loader import PlaybookError, load_text
from momently.moments.playbook import Playbook
from momently.state.profile import Profile, Stamped
from momently.web.app import create_app
from tests.conftest import ADMIN_KEY, START, WRITE_KEY
from tests.test_events_properties import json_values, messages, received

PATHS: Final = ["/v1/track", "/v1/identify", "/v1/page", "/v1/alias", "/v1/group", "/v1/batch"]
CONTENT_TYPES: Final = ["application/json", "text/plain", "", "application/xml", "text/html;x"]
ENCODINGS: Final = [None, "gzip", "identity", "br", "GZIP "]
SECRET: Final = b"s" * 32
SETTINGS: Final = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- event bodies ------------------------------------------------------------------------------


@st.composite
def damaged(draw: st.DrawFn, message: dict[str, Any]) -> dict[str, Any]:
    """A message with a few fields replaced by any JSON, or removed."""
    out = dict(message)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([*out, "type", "userId", "timestamp", "properties", "context"]))
        if draw(st.booleans()):
            out[key] = draw(json_values)
        else:
            out.pop(key, None)
    return out


segment = messages().flatmap(lambda m: st.one_of(st.just(m), damaged(m)))
documents = st.one_of(
    segment,
    st.lists(segment, max_size=5).map(lambda b: {"batch": b}),
    st.lists(segment, max_size=3).flatmap(
        lambda b: st.fixed_dictionaries({"batch": st.just(b), "sentAt": json_values})
    ),
    json_values,
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """Raw bytes and the Content-Encoding header sent with them."""
    raw = draw(
        st.one_of(
            documents.map(msgspec.json.encode),
            st.binary(max_size=300),
            st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        )
    )
    how = draw(st.sampled_from(["plain", "gzip", "gzip-truncated", "gzip-unsaid"]))
    encoding = draw(st.sampled_from(ENCODINGS))
    if how == "gzip":
        return gzip.compress(raw), "gzip"
    if how == "gzip-truncated":
        packed = gzip.compress(raw)
        return packed[: draw(st.integers(0, len(packed) - 1))], "gzip"
    if how == "gzip-unsaid":  # the mobile clients gzip without saying so
        return gzip.compress(raw), None
    return raw, encoding


def counts(app: FastAPI) -> dict[str, int]:
    found: dict[str, int] = app.state.store.stats()
    return found


@contextmanager
def serving(data: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    """The whole app in process on a SQLite store in ``data``, lifespan running."""
    app = create_app(
        Settings(data_dir=data, write_keys=(WRITE_KEY,), admin_key=ADMIN_KEY, synchronous="OFF"),
        clock=FakeClock(START),
        delivery_worker=False,
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield app, client


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, TestClient]]:
    with serving(Path(tmp_path_factory.mktemp("fuzz"))) as both:
        yield both


def post_body(
    app: FastAPI, client: TestClient, path: str, body: tuple[bytes, str | None], media: str
) -> None:
    data, encoding = body
    headers = {"Content-Type": media}
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    before = counts(app)
    answer = client.post(path, content=data, headers=headers, auth=(WRITE_KEY, ""))
    assert answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    after = counts(app)
    if answer.status_code == 200:
        assert after["events"] - before["events"] == answer.json()["accepted"]
    else:
        assert after == before, f"{answer.status_code} {answer.text}: wrote {before} -> {after}"
        assert isinstance(answer.json()["reason"], str)


@SETTINGS
@given(path=st.sampled_from(PATHS), body=bodies(), media=st.sampled_from(CONTENT_TYPES))
def test_http_bodies_never_5xx_and_refusals_write_nothing(
    served: tuple[FastAPI, TestClient], path: str, body: tuple[bytes, str | None], media: str
) -> None:
    post_body(*served, path, body, media)


@SETTINGS
@given(body=bodies(), received=received)  # the server's clock: 2000 to 2050
def test_body_pipeline_raises_only_invalid_input(
    body: tuple[bytes, str | None], received: int
) -> None:
    data, encoding = body
    try:
        raw = decode_body(data, encoding, MAX_BATCH_BYTES)
        batch = decode_batch(raw if raw.lstrip()[:1] == b"{" else b'{"batch": [' + raw + b"]}")
        for index, item in enumerate(batch.batch):
            encoded = msgspec.json.encode(item)
            message = decode_message(encoded, field=f"batch[{index}]")
            event = normalise(message, received_ms=received, source="fuzz", raw_size=len(encoded))
            assert event.message_id
    except InvalidInput as error:
        assert str(error)


# -- the playbook ------------------------------------------------------------------------------

EXAMPLE: Final = yaml.safe_load(
    resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["30m", "1e400", "9" * 40 + "d", "-1h", "24h", "email", "friction", "09:00"]),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


PLACES: Final = [p for p in _paths(EXAMPLE) if p]


@st.composite
def playbooks(draw: st.DrawFn) -> Any:
    """The example playbook with one to four parts replaced, removed or added to."""
    data = copy.deepcopy(EXAMPLE)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(PLACES))
        parent: Any = data
        try:
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed it
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(junk)
        elif action == "remove" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "remove":
            parent.pop(path[-1])
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=8))] = draw(junk)
        elif isinstance(parent[path[-1]], list):
            parent[path[-1]].append(draw(junk))
    return data


@SETTINGS
@given(playbooks())
def test_a_damaged_playbook_loads_or_raises_playbook_error(data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        book = load_text(Playbook, text, source="fuzz.yaml")
    except PlaybookError as error:
        assert error.problems and str(error)
    else:
        assert isinstance(book, Playbook)


# -- templates ---------------------------------------------------------------------------------

PIECES: Final = [
    "{{ ", " }}", "{% ", " %}", "{# ", " #}", "profile", ".", "first_name", "traits", "get(",
    "'x'", ")", "|", "default", "upper", "length", "join", "[", "]", "0", "1", "-1", "if ",
    "for ", "in ", "endif", "endfor", "else", "moment", "offer", "title", "links", "track(",
    "url", "~", "*", "+", "/", "//", "%", "**", "range(", "99", "'", '"', "\n", "x", " ",
    "__class__", "attr(", "format", "lipsum", "{{", "}}", "{%", "%}", "e", "safe", "truncate(",
]  # fmt: skip
sources = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=14).map("".join),
    st.text(max_size=60),
)
trait_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), json_values
)


def _offer(body: str, subject: str | None, url: str | None) -> OfferSpec | None:
    try:
        return OfferSpec(
            id="o", title="Offer", messages={"email": Message(body=body, subject=subject, url=url)}
        )
    except ValueError:
        return None  # the playbook refuses it before any render


RENDERER: Final = Renderer()


@SETTINGS
@given(
    body=sources,
    subject=st.none() | sources,
    url=st.none() | st.sampled_from(["https://x.example/{{ offer.id }}", "{{ profile.x }}"]),
    traits=st.dictionaries(st.sampled_from(["first_name", "name", "plan", "x"]), trait_values),
    html=st.booleans(),
)
def test_templates_render_or_raise_render_error(
    body: str, subject: str | None, url: str | None, traits: dict[str, Any], html: bool
) -> None:
    offer = _offer(body, subject, url)
    if offer is None:
        return
    profile = Profile(
        customer_id="c1",
        created=(START, "m"),
        traits={k: Stamped(v, START, "m") for k, v in traits.items()},
    )
    try:
        rendered = RENDERER.render(offer, "email", profile=profile, moment=None, html=html)
    except RenderError as error:
        assert str(error)
    else:
        assert len(rendered.text) <= RENDERER.max_output
        assert "__class__" not in rendered.text or "__class__" in body


# -- tracking tokens ---------------------------------------------------------------------------

KINDS: Final = ["click", "open", "unsubscribe", "inapp"]


@SETTINGS
@given(token=st.text(max_size=300), kind=st.sampled_from(KINDS))
def test_junk_tokens_raise_token_error(token: str, kind: Any) -> None:
    signer = TokenSigner(SECRET, FakeClock(START))
    with pytest.raises(TokenError):
        signer.verify(token, kind=kind)


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    ids=st.tuples(st.text(max_size=40), st.text(max_size=40), st.text(max_size=20)),
    flip=st.integers(0, 10_000),
    to=st.characters(),
    ttl=st.integers(1, 10**12),
    later=st.integers(0, 2 * 10**12),
)
def test_tokens_verify_until_they_expire_and_any_change_breaks_them(
    kind: Any, ids: tuple[str, str, str], flip: int, to: str, ttl: int, later: int
) -> None:
    clock = FakeClock(START)
    signer = TokenSigner(SECRET, clock)
    url = "https://shop.example/p?q=1" if kind == "click" else None
    token = signer.sign(
        kind=kind, decision_id=ids[0], customer_id=ids[1], channel=ids[2], url=url, ttl_ms=ttl
    )
    at = flip % len(token)
    if token[at] != to:
        with pytest.raises(TokenError):
            signer.verify(token[:at] + to + token[at + 1 :], kind=kind, allow_expired=True)
    clock.advance(later)
    if later < ttl:
        claims = signer.verify(token, kind=kind)
        assert (claims.decision_id, claims.customer_id, claims.channel) == ids
    else:
        with pytest.raises(TokenError):
            signer.verify(token, kind=kind)
        assert signer.verify(token, kind=kind, allow_expired=True).decision_id == ids[0]


@SETTINGS
@given(
    route=st.sampled_from(["GET /t/c/{}", "GET /t/o/{}.gif", "GET /t/u/{}", "POST /t/u/{}"]),
    token=st.text(
        st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%\\"),
        min_size=1,
        max_size=200,
    ),
)
def test_tracking_routes_refuse_bad_tokens_without_writing(
    served: tuple[FastAPI, TestClient], route: str, token: str
) -> None:
    app, client = served
    method, path = route.split(" ")
    before = counts(app)
    answer = client.request(method, path.format(token), follow_redirects=False)
    assert answer.status_code < 500, answer.text
    if not path.startswith("/t/o/"):  # the open pixel is a 200 GIF whatever the token
        assert answer.status_code >= 400  # no genuine token here
    assert counts(app) == before
