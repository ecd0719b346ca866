"""World events: things that happen to a place or a product, and the geometry they need.

"Hot doughnuts now at store 12", "price drop on SKU 42", "back in stock": a
:class:`WorldEvent` arrives on the admin API (``POST /api/world-events``) and
names its audience with one or more selectors — customers *near* a place now,
*subscribed* to a topic, or *interested* in a product or category. The
:class:`~momently.moments.audience.AudienceIndex` turns it into
:class:`Recipient` s, each customer once with every reason that selected it.

>>> event = WorldEvent(id="w-1", name="hot-now", near={"place": "store-12"})
>>> event.near.radius_m, event.near.seen_within, event.expires_in
(500.0, 1800000, 3600000)
>>> round(haversine_m(51.5007, -0.1246, 51.5014, -0.1419))
1200

Positions are filed in a :class:`CellGrid` of about ``cell_m`` square cells:
rows of equal latitude height, each with as many columns as fit ``cell_m``
wide at its poleward edge, so cells stay roughly square from the equator to
the poles (a row at a pole is one cell). Columns wrap around the antimeridian,
and a circle that contains a pole covers whole rows, so neither the poles nor
the date line need special cases anywhere else.

>>> grid = cell_grid(500.0)
>>> grid.key(51.5, -0.12) in set(grid.cover(51.5, -0.12, 100.0))
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from math import floor
from typing import Any, Final

import msgspec
import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator, model_validator

from momently.moments.spec import Duration, SpecModel

EARTH_RADIUS_M: Final = 6_371_008.8  # mean radius (IUGG); the error is < 0.5 % anywhere
MAX_RADIUS_M: Final = 50_000.0
_COL_BITS: Final = 32  # a cell key is row << 32 | column
_MARGIN: Final = 1e-6  # widens a cover so that rounding never loses a point on its edge

FloatArray = npt.NDArray[np.float64]


class Near(SpecModel):
    """The "near a place now" selector: a place id or explicit coordinates.

    A place id is resolved to coordinates by the caller (from the playbook's
    places); only positions seen within ``seen_within`` of the fan-out count.
    """

    place: str | None = Field(default=None, min_length=1, max_length=200)
    lat: float | None = Field(default=None, ge=-90.0, le=90.0, allow_inf_nan=False)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0, allow_inf_nan=False)
    radius_m: float = Field(default=500.0, gt=0.0, le=MAX_RADIUS_M, allow_inf_nan=False)
    seen_within: Duration = Field(default="30m", validate_default=True)

    @model_validator(mode="after")
    def _one_location(self) -> Near:
        has_point = self.lat is not None or self.lon is not None
        if has_point and (self.lat is None or self.lon is None):
            raise ValueError("near needs both lat and lon, or a place id")
        if self.place is None and not has_point:
            raise ValueError("near needs a place id or lat and lon")
        if self.place is not None and has_point:
            raise ValueError("near takes a place id or lat and lon, not both")
        if self.seen_within <= 0:
            raise ValueError("near.seen_within must be longer than 0")
        return self

    @property
    def label(self) -> str:
        """How the place is named in a recipient's reason."""
        if self.place is not None:
            return self.place
        return f"{self.lat:.5f},{self.lon:.5f}"


_Names = tuple[str, ...]


class WorldEvent(SpecModel):
    """The body of ``POST /api/world-events``.

    ``id`` makes the event idempotent (the caller stores ids: the same id twice
    fans out once). ``at`` is the event time in ms; the server fills in the
    time it received the event when it is missing.
    """

    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    at: int | None = Field(default=None, ge=0)
    expires_in: Duration = Field(default="1h", validate_default=True)
    near: Near | None = None
    topics: _Names = ()
    products: _Names = ()
    categories: _Names = ()
    interest_within: Duration = Field(default="30d", validate_default=True)
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("topics", "products", "categories")
    @classmethod
    def _distinct_names(cls, value: _Names) -> _Names:
        if any(not name for name in value):
            raise ValueError("names may not be empty")
        return tuple(dict.fromkeys(value))  # a repeated name would repeat a reason

    @model_validator(mode="after")
    def _has_audience(self) -> WorldEvent:
        if self.near is None and not (self.topics or self.products or self.categories):
            raise ValueError(
                "a world event needs an audience: at least one of near, topics, "
                "products or categories"
            )
        if self.expires_in <= 0:
            raise ValueError("expires_in must be longer than 0")
        if self.interest_within <= 0:
            raise ValueError("interest_within must be longer than 0")
        return self

    @property
    def trigger(self) -> str:
        """The cause key moments from this event carry (see ``Moment.trigger``)."""
        return f"world:{self.id}"

    def expires_ms(self, received_ms: int) -> int:
        """When moments from this event expire: ``at`` (or arrival) plus ``expires_in``."""
        return (received_ms if self.at is None else self.at) + self.expires_in


class Recipient(msgspec.Struct, frozen=True, gc=False):
    """One customer a world event concerns, with every reason it was chosen.

    A msgspec Struct rather than a dataclass: a fan-out builds hundreds of
    thousands of them and a Struct is built about six times faster.
    """

    customer_id: str
    reasons: tuple[str, ...]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    half = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(half)))


def haversine_many_m(lat: float, lon: float, lats: FloatArray, lons: FloatArray) -> FloatArray:
    """Distances in metres from one point to arrays of points, vectorised."""
    p1 = math.radians(lat)
    p2 = np.radians(lats)
    half = np.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * np.cos(p2) * (
        np.sin(np.radians(lons - lon) / 2) ** 2
    )
    result: FloatArray = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.minimum(half, 1.0)))
    return result


class CellGrid:
    """Cell arithmetic: a point's cell key, and the cells a circle may touch."""

    def __init__(self, cell_m: float) -> None:
        cell_deg = math.degrees(cell_m / EARTH_RADIUS_M)
        self.per_deg = 1.0 / cell_deg
        self.rows = math.ceil(180.0 * self.per_deg)
        south = -90.0 + np.arange(self.rows) * cell_deg
        edge = np.minimum(90.0, np.maximum(np.abs(south), np.abs(south + cell_deg)))
        width = np.floor(360.0 * np.cos(np.radians(edge)) / cell_deg)
        # a plain list: scalar reads from it are several times faster than from numpy
        self.cols: list[int] = np.maximum(1, width).astype(np.int64).tolist()

    def row(self, lat: float) -> int:
        """The row of a latitude in [-90, 90]."""
        return min(self.rows - 1, floor((lat + 90.0) * self.per_deg))

    def key(self, lat: float, lon: float) -> int:
        """The key of the cell holding (lat, lon); lon in [-180, 180]."""
        # floor(), not int(): the same for these non-negative values, and 3x faster
        row = floor((lat + 90.0) * self.per_deg)
        if row >= self.rows:
            row = self.rows - 1
        cols = self.cols[row]
        col = floor((lon + 180.0) * cols / 360.0)
        if col >= cols:  # lon 180 is lon -180
            col -= cols
        return (row << _COL_BITS) | col

    def cover(self, lat: float, lon: float, radius_m: float) -> Iterator[int]:
        """Keys of every cell that may hold a point within ``radius_m`` of (lat, lon)."""
        angle = radius_m / EARTH_RADIUS_M
        dlat = math.degrees(angle) * (1 + _MARGIN) + _MARGIN
        south, north = lat - dlat, lat + dlat
        around_pole = south <= -90.0 or north >= 90.0
        reach = 0.0 if around_pole else math.sin(angle) / math.cos(math.radians(lat))
        # the widest span of longitude a spherical cap covers is asin(sin r / cos lat)
        dlon = 180.0 if reach >= 1.0 else math.degrees(math.asin(reach)) * (1 + _MARGIN) + _MARGIN
        for row in range(self.row(max(-90.0, south)), self.row(min(90.0, north)) + 1):
            cols = self.cols[row]
            base = row << _COL_BITS
            if around_pole or 2.0 * dlon * cols / 360.0 + 2.0 >= cols:
                columns: Iterable[int] = range(cols)
            else:
                west = floor((lon - dlon + 180.0) * cols / 360.0)
                east = floor((lon + dlon + 180.0) * cols / 360.0)
                columns = (col % cols for col in range(west, east + 1))
            for col in columns:
                yield base | col


@functools.cache
def cell_grid(cell_m: float) -> CellGrid:
    """The grid for a cell size; grids are immutable, so indexes share them."""
    return CellGrid(cell_m)
