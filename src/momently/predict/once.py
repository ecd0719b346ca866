"""``cached_property`` without its lock: an answer worked out when first read, then kept.

Python 3.11's ``functools.cached_property`` takes a lock on every first read;
a customer's predictions are read under the stage's own lock, one answer at a
time, and pay for ten of them per event. This is the same non-data descriptor
without it: the first read stores the value in the instance's ``__dict__``,
where every later read finds it without calling anything.

>>> class Lazy:
...     calls = 0
...     @once
...     def value(self) -> int:
...         Lazy.calls += 1
...         return 42
>>> lazy = Lazy()
>>> lazy.value, lazy.value, Lazy.calls
(42, 42, 1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")


class once(Generic[T]):  # noqa: N801 - named like the decorator it replaces
    """A property computed on first read and stored on the instance."""

    def __init__(self, function: Callable[[Any], T]) -> None:
        self.function = function
        self.name = function.__name__
        self.__doc__ = function.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> once[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | once[T]:
        if instance is None:
            return self
        value = self.function(instance)
        instance.__dict__[self.name] = value
        return value
