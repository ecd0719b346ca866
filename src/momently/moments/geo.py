"""Places on the map: their playbook specs, distances to them, and a spatial index.

A place is a circle, a polygon, or only a set of beacons (an aisle, a fitting
room), and may carry beacons beside its shape. Geometry works in metres:

* :func:`distance_m` is the haversine distance on a spherical Earth;
* :func:`boundary_distance_m` is *signed*: negative inside the place, positive
  outside, so one number says both "inside?" and "how confidently?". Circles
  use ``haversine - radius``; polygons are measured with shapely in a local
  equirectangular projection around the polygon's first vertex, which is exact
  to well under a metre for anything the size of a store or a mall.

:class:`PlaceIndex` answers "which places are within ``pad_m`` of this fix?"
in microseconds for thousands of places: an integer grid of cells of about
1 km (``_CELL_DEG`` degrees) maps to the places whose bounding box touches the
cell; a fix looks up the cells under its padded box, drops places whose
bounding box misses it, and only then measures exactly. Places too big for the
grid (more than ``_MAX_CELLS`` cells) are always measured. Longitudes do not
wrap at the antimeridian.

>>> store = PlaceSpec(id="s12", circle=Circle(lat=51.5, lon=-0.12, radius_m=50))
>>> round(boundary_distance_m(store, 51.5, -0.12))
-50
>>> index = PlaceIndex([store], GeoSettings())
>>> [p.id for p in index.candidates(51.5004, -0.12, 25.0)]
['s12']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Final

import shapely
from pydantic import Field, PrivateAttr, field_validator, model_validator

from momently.moments.spec import Duration, SpecModel

EARTH_RADIUS_M: Final = 6_371_008.8  # mean radius (IUGG)
_M_PER_DEG: Final = EARTH_RADIUS_M * math.pi / 180.0
_CELL_DEG: Final = 0.01  # ~1.1 km of latitude
_MAX_CELLS: Final = 400  # a place spanning more cells than this is checked on every fix
_MIN_COS: Final = 1e-6  # keeps longitude scaling finite at the poles
_RAD: Final = math.pi / 180.0


class Circle(SpecModel):
    """A circle of ``radius_m`` metres around a centre."""

    lat: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False)
    lon: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)
    radius_m: float = Field(gt=0.0, le=1_000_000.0, allow_inf_nan=False)


class BeaconSpec(SpecModel):
    """An iBeacon-style identity; ``major``/``minor`` left out match any value."""

    uuid: str = Field(min_length=1, max_length=64)
    major: int | None = Field(default=None, ge=0, le=65535)
    minor: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("uuid")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()  # sightings match case-insensitively


class _Polygon:
    """A polygon projected to local metres once, for the hot path."""

    __slots__ = ("lat0", "lon0", "kx", "shape", "ring", "depth_m")

    def __init__(self, vertices: Sequence[tuple[float, float]]) -> None:
        self.lat0, self.lon0 = vertices[0]
        self.kx = _M_PER_DEG * max(math.cos(math.radians(self.lat0)), _MIN_COS)
        self.shape = shapely.Polygon([self.xy(lat, lon) for lat, lon in vertices])
        shapely.prepare(self.shape)
        self.ring = self.shape.exterior
        # how deep inside a point can be: bounds the accuracy margin required to enter
        self.depth_m = float(shapely.maximum_inscribed_circle(self.shape).length)

    def xy(self, lat: float, lon: float) -> tuple[float, float]:
        """Local metres east and north of the first vertex."""
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * _M_PER_DEG

    def signed_distance(self, lat: float, lon: float) -> float:
        """Metres to the boundary: negative inside."""
        x, y = self.xy(lat, lon)
        gap = float(self.ring.distance(shapely.Point(x, y)))
        return -gap if shapely.contains_xy(self.shape, x, y) else gap


class PlaceSpec(SpecModel):
    """One entry of the playbook's ``places:`` list."""

    id: str = Field(min_length=1, max_length=200)
    name: str = ""
    kind: str = "store"
    tags: tuple[str, ...] = ()
    circle: Circle | None = None
    polygon: tuple[tuple[float, float], ...] | None = Field(
        default=None, description="(lat, lon) vertices; at least 3, not self-intersecting"
    )
    beacons: tuple[BeaconSpec, ...] = ()
    dwell: Duration = Field(
        default="5m", validate_default=True, description="inside this long is a dwell"
    )
    _polygon: _Polygon | None = PrivateAttr(default=None)

    @field_validator("polygon")
    @classmethod
    def _vertices(
        cls, value: tuple[tuple[float, float], ...] | None
    ) -> tuple[tuple[float, float], ...] | None:
        if value is None:
            return None
        for lat, lon in value:
            if not (math.isfinite(lat) and math.isfinite(lon)):
                raise ValueError(f"polygon vertex ({lat}, {lon}) is not a number")
            if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                raise ValueError(
                    f"polygon vertex ({lat}, {lon}) is out of range: "
                    "vertices are (latitude -90..90, longitude -180..180)"
                )
        if len(value) > 1 and value[0] == value[-1]:
            value = value[:-1]  # a closed ring is fine too
        if len(value) < 3:
            raise ValueError("a polygon needs at least 3 distinct vertices")
        shape = shapely.Polygon([(lon, lat) for lat, lon in value])
        if not shape.is_valid:
            # shapely says "Self-intersection[lon lat]"; name the point the playbook's way round
            reason, _, where = str(shapely.is_valid_reason(shape)).partition("[")
            lon_lat = where.rstrip("]").split()
            at = f" near ({lon_lat[1]}, {lon_lat[0]})" if len(lon_lat) == 2 else ""
            raise ValueError(f"the polygon is not valid: {reason}{at}; its edges may not cross")
        return value

    @model_validator(mode="after")
    def _one_shape(self) -> PlaceSpec:
        if self.circle is not None and self.polygon is not None:
            raise ValueError(f"place {self.id!r}: give a circle or a polygon, not both")
        if self.circle is None and self.polygon is None and not self.beacons:
            raise ValueError(f"place {self.id!r} needs a circle, a polygon or beacons")
        if self.polygon is not None:
            self._polygon = _Polygon(self.polygon)
        return self

    @property
    def has_area(self) -> bool:
        """Whether GPS fixes can place a customer here (it has a circle or a polygon)."""
        return self.circle is not None or self.polygon is not None

    def depth_m(self) -> float:
        """The deepest a point can be inside: the radius, or the polygon's inscribed radius."""
        if self.circle is not None:
            return self.circle.radius_m
        return self._polygon.depth_m if self._polygon is not None else 0.0

    def signed_distance(self, lat: float, lon: float) -> float:
        """Signed metres from the boundary (see :func:`boundary_distance_m`)."""
        return self.measure()(lat, lon)

    def measure(self) -> Callable[[float, float], float]:
        """A fast ``(lat, lon) -> signed metres`` for this place, for an index to keep."""
        if self.circle is not None:
            c = self.circle
            return partial(_circle_distance, c.lat, c.lon, c.radius_m)
        if self._polygon is not None:
            return self._polygon.signed_distance
        return _nowhere

    def bbox(self) -> tuple[float, float, float, float]:
        """``(min_lat, min_lon, max_lat, max_lon)`` of the shape; only for places with area."""
        if self.circle is not None:
            c = self.circle
            dlat = c.radius_m / _M_PER_DEG
            dlon = c.radius_m / (_M_PER_DEG * max(math.cos(math.radians(c.lat)), _MIN_COS))
            return c.lat - dlat, c.lon - dlon, c.lat + dlat, c.lon + dlon
        if self.polygon is None:
            raise ValueError(f"place {self.id!r} has no area")
        lats = [v[0] for v in self.polygon]
        lons = [v[1] for v in self.polygon]
        return min(lats), min(lons), max(lats), max(lons)


class GeoSettings(SpecModel):
    """The playbook's ``detectors.place`` section."""

    enabled: bool = True
    hysteresis_m: float = Field(
        default=25.0, ge=0.0, allow_inf_nan=False, description="exit only this far outside"
    )
    max_accuracy_m: float = Field(
        default=150.0, gt=0.0, allow_inf_nan=False, description="less accurate fixes are ignored"
    )
    beacon_timeout: Duration = Field(
        default="3m", validate_default=True, description="no sighting this long = left"
    )
    expiry: Duration = Field(
        default="30m", validate_default=True, description="how long a place moment stays valid"
    )

    @field_validator("beacon_timeout")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("beacon_timeout must be longer than zero")
        return value


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine).

    >>> round(distance_m(0.0, 0.0, 0.0, 1.0))
    111195
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    h = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _circle_distance(clat: float, clon: float, radius_m: float, lat: float, lon: float) -> float:
    return distance_m(clat, clon, lat, lon) - radius_m


def _nowhere(lat: float, lon: float) -> float:
    return math.inf


def boundary_distance_m(place: PlaceSpec, lat: float, lon: float) -> float:
    """Signed metres from the place's boundary: negative inside; ``inf`` for beacon-only places."""
    return place.signed_distance(lat, lon)


def _cell(lat: float, lon: float) -> tuple[int, int]:
    return math.floor(lat / _CELL_DEG), math.floor(lon / _CELL_DEG)


class PlaceIndex:
    """The playbook's places, indexed by a ~1 km grid and by beacon identity."""

    def __init__(self, places: Sequence[PlaceSpec], settings: GeoSettings) -> None:
        self.settings = settings
        self.places: tuple[PlaceSpec, ...] = tuple(places)
        self._by_id: dict[str, int] = {}
        self._bbox: list[tuple[float, float, float, float]] = []
        self._measure: list[Callable[[float, float], float]] = []
        self._grid: dict[tuple[int, int], list[int]] = {}
        self._big: list[int] = []  # too large for the grid; measured on every fix
        self._beacons: dict[str, list[tuple[int | None, int | None, int]]] = {}
        for i, place in enumerate(self.places):
            if place.id in self._by_id:
                raise ValueError(f"place id {place.id!r} appears twice")
            self._by_id[place.id] = i
            for b in place.beacons:
                self._beacons.setdefault(b.uuid, []).append((b.major, b.minor, i))
            self._bbox.append(place.bbox() if place.has_area else (math.inf,) * 4)
            self._measure.append(place.measure())
            if place.has_area:
                self._insert(i)

    def _insert(self, i: int) -> None:
        lat0, lon0, lat1, lon1 = self._bbox[i]
        (y0, x0), (y1, x1) = _cell(lat0, lon0), _cell(lat1, lon1)
        if (y1 - y0 + 1) * (x1 - x0 + 1) > _MAX_CELLS:
            self._big.append(i)
            return
        for y in range(y0, y1 + 1):
            for x in range(x0, x1 + 1):
                self._grid.setdefault((y, x), []).append(i)

    def __len__(self) -> int:
        return len(self.places)

    def place(self, place_id: str) -> PlaceSpec:
        """The place with this id; ``KeyError`` if the playbook has none."""
        return self.places[self._by_id[place_id]]

    def get(self, place_id: str) -> PlaceSpec | None:
        """The place with this id, or ``None`` (a visit recorded under an older playbook)."""
        i = self._by_id.get(place_id)
        return None if i is None else self.places[i]

    def near(self, lat: float, lon: float, pad_m: float) -> list[tuple[PlaceSpec, float]]:
        """Places with area whose boundary is within ``pad_m`` metres, with signed distances."""
        dlat = pad_m / _M_PER_DEG
        dlon = pad_m / (_M_PER_DEG * max(math.cos(lat * _RAD), _MIN_COS))
        floor = math.floor
        y0, y1 = floor((lat - dlat) / _CELL_DEG), floor((lat + dlat) / _CELL_DEG)
        x0, x1 = floor((lon - dlon) / _CELL_DEG), floor((lon + dlon) / _CELL_DEG)
        seen: set[int] | list[int]
        if (y1 - y0 + 1) * (x1 - x0 + 1) > _MAX_CELLS:
            seen = [i for i, p in enumerate(self.places) if p.has_area]
        elif y0 == y1 and x0 == x1:
            seen = self._grid.get((y0, x0), [])
        else:
            seen = set()
            for y in range(y0, y1 + 1):
                for x in range(x0, x1 + 1):
                    seen.update(self._grid.get((y, x), ()))
        found: list[tuple[PlaceSpec, float]] = []
        for group in (seen, self._big):
            for i in group:
                b = self._bbox[i]
                if lat + dlat < b[0] or lat - dlat > b[2] or lon + dlon < b[1] or lon - dlon > b[3]:
                    continue
                d = self._measure[i](lat, lon)
                if d <= pad_m:
                    found.append((self.places[i], d))
        found.sort(key=_by_distance)
        return found

    def candidates(self, lat: float, lon: float, pad_m: float) -> list[PlaceSpec]:
        """Places within ``pad_m`` metres of their boundary (or inside), nearest first."""
        return [place for place, _ in self.near(lat, lon, pad_m)]

    def beacon_places(self, uuid: str, major: int | None, minor: int | None) -> list[PlaceSpec]:
        """Places one of whose beacons matches this sighting (uuid case-insensitive)."""
        entries = self._beacons.get(uuid.strip().lower())
        if not entries:
            return []
        hits: list[PlaceSpec] = []
        for want_major, want_minor, i in entries:
            if want_major is not None and want_major != major:
                continue
            if want_minor is not None and want_minor != minor:
                continue
            if not hits or hits[-1] is not self.places[i]:
                hits.append(self.places[i])
        return hits


def _by_distance(item: tuple[PlaceSpec, float]) -> tuple[float, str]:
    return item[1], item[0].id
