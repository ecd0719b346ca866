"""Rounding for explanations, bit for bit as :func:`round` but several times faster.

A decision rounds a score for each candidate and the parts of the top few;
``round(x, n)`` goes through a correctly rounded decimal conversion, which
costs as much as the rest of the scoring. :func:`rounded` takes the integer
nearest to ``x × 10ⁿ`` directly and divides it back (one correctly rounded
division gives the double nearest that decimal, as ``round`` does); only when
the product lies too near a half, where its own rounding error could tip the
choice, or outside the range where doubles hold integers exactly, does it
hand over to :func:`round`.

>>> rounded(0.1234565, 6) == round(0.1234565, 6)
True
>>> rounded(-1e-9, 6)
-0.0
"""

from __future__ import annotations

import math
from typing import Final

_SCALES: Final = tuple(10.0**n for n in range(16))
_EXACT: Final = 2.0**52  # below this, a double's integer and fractional parts are exact
_MARGIN: Final = 1e-9  # relative distance from a half that the product's error cannot cross


def rounded(x: float, digits: int) -> float:
    """``round(x, digits)`` for ``0 <= digits < 16``, the same double."""
    scale = _SCALES[digits]
    y = x * scale
    if -_EXACT < y < _EXACT:  # also False for NaN and the infinities
        whole = math.floor(y)
        fraction = y - whole  # exact
        if abs(fraction - 0.5) > _MARGIN * (abs(y) + 1.0):
            nearest = whole + 1 if fraction > 0.5 else whole
            if nearest == 0:
                return math.copysign(0.0, x)  # round() keeps the sign of a zero
            return nearest / scale
    return round(x, digits)
