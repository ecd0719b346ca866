"""Needs: what a simulated customer comes to want, and how it plays out.

A need arises (a toaster dies, months of wondering about clear braces come
to a head), stays live for a while, and ends in an order from the brand — on
the customer's own, or after a message that speaks to it — or lapses when it
is met elsewhere. Its stages are the shop's funnel (research, consider,
basket, checkout) or, for clear braces, the journey's pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class NeedSpec:
    """Something a customer comes to want, and how it plays out."""

    name: str
    category: str  # product category; a message "matches" when its category is this
    intent: str  # the intent.tsv category its searches come from
    price: tuple[float, float]
    lasts_hours: float  # mean time the need stays live before it is met elsewhere
    close: float  # P(an order) when the customer reaches checkout unprompted
    advance: float  # P(one stage further) after a session spent on it
    responsive: float  # P(an order) after clicking a matching message
    keyword: str | None = None  # its searches contain this word where the data allows
    journey: bool = False  # walks the clear-braces pages rather than the shop's funnel
    broken: bool = False  # arises when something breaks: a post or a support message
    in_store: bool = False  # bought over the counter, on the way past the store


def _need(
    name: str,
    category: str,
    intent: str,
    price: tuple[float, float],
    lasts_hours: float,
    close: float,
    advance: float,
    responsive: float,
    **flags: bool | str,
) -> NeedSpec:
    keyword = flags.pop("keyword", None)
    return NeedSpec(
        name,
        category,
        intent,
        price,
        lasts_hours,
        close,
        advance,
        responsive,
        keyword=None if keyword is None else str(keyword),
        **{k: bool(v) for k, v in flags.items()},
    )


# fmt: off
NEEDS: Final = {n.name: n for n in (
    #     name           category        intent               price          hours close adv  resp
    _need("toaster",     "toasters",     "kitchen-appliances", (15.0, 80.0),    96, .45, .6, .55,
          keyword="toaster", broken=True),
    _need("kettle",      "kettles",      "kitchen-appliances", (18.0, 70.0),   120, .45, .55, .5,
          keyword="kettle", broken=True),
    _need("clear-braces", "orthodontics", "orthodontics",    (1800.0, 3900.0), 1200, .35, .5, .2,
          journey=True),
    _need("doughnut",    "bakery",       "bakery-cafe",       (3.0, 12.0),     1.5, 0.0, 0.0, .6,
          in_store=True),
    _need("fashion",     "fashion",      "fashion",           (25.0, 140.0),   240, .35, .5, .4),
    _need("electronics", "electronics",  "electronics",       (40.0, 450.0),   336, .3, .45, .3),
    _need("beauty",      "beauty",       "beauty",            (8.0, 45.0),     168, .4, .55, .45),
    _need("travel",      "travel",       "travel",            (80.0, 650.0),   504, .25, .4, .25),
    _need("grocery",     "grocery",      "grocery",           (15.0, 60.0),     48, .55, .7, .5),
    _need("home-garden", "home-garden",  "home-garden",       (10.0, 160.0),   240, .35, .5, .4),
)}
# fmt: on
"""Every need the simulator knows, by name."""
