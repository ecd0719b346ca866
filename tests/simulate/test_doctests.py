"""The examples in the simulator's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import momently.simulate

MODULES = sorted(
    m.name for m in pkgutil.iter_modules(momently.simulate.__path__, "momently.simulate.")
)


@pytest.mark.parametrize("name", ["momently.simulate", *MODULES])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
