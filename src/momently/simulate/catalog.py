"""What the simulated world is made of: places, search queries, products and words.

Places come from a playbook (the example one by default) so that geofences
and beacons fire where the playbook expects them; queries come from the
intent data set momently's intent model learns from, so searches read like
real ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from momently.simulate.needs import NEEDS, NeedSpec
from momently.simulate.simtime import rng

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Place:
    """A place from the playbook: its centre, its size and its beacon if it has one."""

    id: str
    name: str
    kind: str
    lat: float
    lon: float
    radius_m: float
    beacon: tuple[str, int] | None = None  # uuid, major


@dataclass(frozen=True, slots=True)
class Product:
    id: str
    name: str
    category: str
    price: float


def _place(item: dict[str, Any]) -> Place:
    beacons = item.get("beacons") or []
    beacon = (str(beacons[0]["uuid"]), int(beacons[0].get("major") or 0)) if beacons else None
    if "circle" in item:
        c = item["circle"]
        lat, lon, radius = float(c["lat"]), float(c["lon"]), float(c["radius_m"])
    else:
        vertices = [(float(a), float(b)) for a, b in item["polygon"]]
        lat = sum(v[0] for v in vertices) / len(vertices)
        lon = sum(v[1] for v in vertices) / len(vertices)
        radius = 0.5 * min(
            111_320 * (max(v[0] for v in vertices) - min(v[0] for v in vertices)),
            111_320
            * math.cos(math.radians(lat))
            * (max(v[1] for v in vertices) - min(v[1] for v in vertices)),
        )
    return Place(
        str(item["id"]),
        str(item.get("name", item["id"])),
        str(item.get("kind", "")),
        lat,
        lon,
        radius,
        beacon,
    )


def load_places(path: str | Path | None = None) -> tuple[Place, ...]:
    """The places of a playbook file (the example playbook when ``path`` is None)."""
    if path is None:
        text = resources.files("momently.playbooks").joinpath("example.yaml").read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    document = yaml.load(text, Loader=_Loader) or {}  # noqa: S506 - a safe loader (C or Python)
    return tuple(_place(item) for item in document.get("places") or ())


def load_queries() -> dict[tuple[str, str], tuple[str, ...]]:
    """Search texts from momently's intent data, by (kind, category)."""
    text = resources.files("momently.moments").joinpath("data", "intent.tsv").read_text("utf-8")
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].strip():
            grouped[parts[1], parts[2]].append(parts[0])
    return {key: tuple(values) for key, values in grouped.items()}


_FALLBACK: Final = ("best {c}", "{c} near me", "{c} deals", "how to choose {c}")


class Catalog:
    """Products by category and queries by need, built once and shared by every customer."""

    def __init__(self, places: tuple[Place, ...] | None = None) -> None:
        self.places = load_places() if places is None else places
        self.place = {p.id: p for p in self.places}
        queries = load_queries()
        self.noise = queries.get(("none", "none"), ("log in",))
        self.curious = tuple(q for (k, _), qs in queries.items() if k == "know" for q in qs)
        self.queries: dict[str, dict[str, tuple[str, ...]]] = {}
        for need in NEEDS.values():
            self.queries[need.name] = {
                kind: _need_queries(queries, need, kind) for kind in ("know", "do", "go", "buy")
            }
        self.products: list[Product] = []
        self.by_category: dict[str, tuple[int, ...]] = {}
        draw = rng(0, 0x0CA7)  # one fixed shop for every run
        for need in NEEDS.values():
            if need.category in self.by_category:
                continue
            low, high = need.price
            start = len(self.products)
            for k in range(12):
                price = round(low + (high - low) * draw.random(), 2)
                self.products.append(
                    Product(
                        f"{need.category}-{k + 1}",
                        f"{need.category} {k + 1}".title(),
                        need.category,
                        price,
                    )
                )
            self.by_category[need.category] = tuple(range(start, len(self.products)))
        for extra in ("kitchen-appliances", "recipes"):
            start = len(self.products)
            for k in range(12):
                price = round(5 + 60 * draw.random(), 2)
                self.products.append(
                    Product(f"{extra}-{k + 1}", f"{extra} {k + 1}".title(), extra, price)
                )
            self.by_category[extra] = tuple(range(start, len(self.products)))
        self.all_products = tuple(range(len(self.products)))


def _need_queries(
    queries: dict[tuple[str, str], tuple[str, ...]], need: NeedSpec, kind: str
) -> tuple[str, ...]:
    pool = queries.get((kind, need.intent), ())
    if need.keyword is not None:
        keyed = tuple(q for q in pool if need.keyword in q.lower())
        if keyed:
            return keyed
        return tuple(f.format(c=need.keyword) for f in _FALLBACK)
    return pool or tuple(f.format(c=need.category) for f in _FALLBACK)


EXAMPLE_OFFERS: Final = {
    "family-toaster": "toasters",
    "student-toaster": "toasters",
    "cart-reminder": "*",
    "store-nearby": "bakery",
    "doughnuts-here": "bakery",
    "how-to-guide": "guides",
    "sorry-voucher": "*",
    "braces-consultation": "orthodontics",
}
"""The category each offer of the example playbook speaks to, for :class:`Send`; ``*``
(a basket reminder, a voucher) speaks to whatever the customer needs, at half the pull."""

BROKEN_POSTS: Final = (
    "my {thing} just died \U0001f62d anyone recommend a good one?",
    "RIP {thing} \U0001f480 breakfast is ruined",
    "of course the {thing} breaks on a monday \U0001f621",
    "need a new {thing} asap, this one is done",
    "the {thing} sparked and now it's dead \U0001f525\U0001f62c",
)
BROKEN_SUPPORT: Final = (
    "Hi, the {thing} I bought from you has stopped working \U0001f620 what can you do?",
    "my {thing} stopped working after 3 months, really disappointed",
    "Your {thing} broke again. Second one this year \U0001f621",
)
SMILE_POSTS: Final = (
    "three weeks in with my clear braces and loving my new smile \u2728",
    "aligner life \U0001f601 can't believe nobody notices them",
    "best decision this year, my smile is coming along \U0001f60a #clearbraces",
)
HAPPY_POSTS: Final = (
    "new {thing} arrived and it's great \U0001f44d",
    "treated myself \U0001f60d",
)
