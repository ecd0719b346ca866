"""Jinja2's immutable sandbox, with bounds on the work and memory one render may take.

Jinja's sandbox already refuses what would run code: private and dunder
attributes (``''.__class__.__mro__``, ``cycler.__init__.__globals__``),
unsafe callables, ``str.format`` reaching attributes, ranges over 100,000, and
any change to lists and dicts. What it leaves open is *exhaustion*: two nested
loops over a long range, ``'a' * 10**9``, ``'x'.center(10**9)``, a string
doubled in a loop. :class:`GuardedSandbox` closes those with

* an operation budget per render: every loop iteration and every call takes
  one unit, a macro call :data:`MACRO_COST` (``max_ops`` in all), so no template
  runs for ever;
* a size bound (``max_size`` characters or items) checked *before* the
  operations that grow a value (``*``, ``+``, ``~``, ``%``, ``**``, padding
  methods, ``replace``, format widths) and on every call's and filter's result;
* no ``lipsum`` global (it generates text in bulk, and no message needs it).

Each breach raises :class:`TemplateBudgetError`, a ``SecurityError`` the
renderer turns into a clear ``RenderError``.

>>> env = GuardedSandbox(max_ops=1_000, max_size=1_000)
>>> env.from_string("{{ 'ab' * 2 }}").render()
'abab'
>>> env.from_string("{{ 'a' * 100000 }}").render()  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
...
TemplateBudgetError: a value of 100000 items is over the 1000 allowed
"""

from __future__ import annotations

import re
import string
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, wraps
from typing import Any, Final

from jinja2 import Template, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_OPS: Final = 100_000
MACRO_COST: Final = 20  # a macro call costs about as much as 20 loop iterations
MAX_SIZE: Final = 200_000
MAX_POW_BITS: Final = 4_096
_PADDING: Final = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# Filters whose integer arguments size their output.
_SIZED_FILTERS: Final = frozenset({"center", "indent", "wordwrap", "batch", "slice", "truncate"})
_PERCENT: Final = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_SPEC_NUMBER: Final = re.compile(r"\d+")


class TemplateBudgetError(SecurityError):
    """A render went over its operation budget or built a value over the size bound."""


def _size(value: object) -> int:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else 0


class _Budget(threading.local):
    left: int = MAX_OPS


class GuardedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose renders are bounded in operations and value size."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, max_ops: int = MAX_OPS, max_size: int = MAX_SIZE, **options: Any):
        super().__init__(**options)
        self.max_ops = max_ops
        self.max_size = max_size
        self._budget = _Budget()
        self.globals.pop("lipsum", None)
        self.filters = {name: self._guard_filter(name, f) for name, f in self.filters.items()}

    # -- the budget ------------------------------------------------------------------------

    def start(self) -> None:
        """Give the render about to run on this thread its full budget."""
        self._budget.left = self.max_ops

    def charge(self, units: int = 1) -> None:
        self._budget.left -= units
        if self._budget.left < 0:
            raise TemplateBudgetError(
                f"the template did over {self.max_ops} operations (a loop too long?)"
            )

    def budget_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """What every ``{% for %}`` iterates: the loop's items, one unit each."""
        for item in iterable:
            self.charge()
            yield item

    def budget_concat(self, *parts: Any) -> str:
        """The ``~`` operator, refusing a result over the size bound."""
        texts = [str(part) for part in parts]
        self._check_size(sum(map(len, texts)))
        return "".join(texts)

    def _check_size(self, size: int) -> None:
        if size > self.max_size:
            raise TemplateBudgetError(
                f"a value of {size} items is over the {self.max_size} allowed"
            )

    def _checked(self, value: Any) -> Any:
        self._check_size(_size(value))
        return value

    # -- where the sandbox lets us in ------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree: nodes.Template = _Budgeted().visit(super()._parse(source, name, filename))
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.charge(MACRO_COST if isinstance(__obj, Macro) else 1)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            __self._check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return __self._checked(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        self.charge()
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if _size(seq) and isinstance(times, int):
                    self._check_size(_size(seq) * max(0, times))
        elif operator_ == "+":
            if _size(left) and _size(right):
                self._check_size(_size(left) + _size(right))
        elif operator_ == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
                if left.bit_length() * right > MAX_POW_BITS:
                    raise TemplateBudgetError(f"{left} ** {right} is too large a number")
        elif operator_ == "%" and isinstance(left, str):
            self._check_percent(left)
        return self._checked(self.binop_table[operator_](left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        self._check_format(value.__self__)
        return wrapped

    # -- the size checks -------------------------------------------------------------------

    def _check_number(self, number: Any) -> None:
        if isinstance(number, int) and number > self.max_size:
            self._check_size(number)

    def _check_str_method(self, text: str, name: str, args: Any, kwargs: Any) -> None:
        if name in _PADDING:
            for arg in (*args, *kwargs.values()):
                self._check_number(arg)
            if name == "expandtabs":
                width = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(width, int):
                    self._check_size(len(text) * max(1, width))
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(old, str) and isinstance(new, str):
                pieces = len(text) + 1 if not old else len(text) // len(old) + 1
                self._check_size(len(text) + pieces * len(new))

    def _check_percent(self, fmt: str) -> None:
        widest = _percent_width(fmt)
        if widest < 0:
            raise TemplateBudgetError("'*' widths are not allowed in % formats")
        self._check_number(widest)

    def _check_format(self, fmt: str) -> None:
        try:
            fields = list(string.Formatter().parse(fmt))
        except ValueError:
            return  # str.format itself will refuse it
        for _, _, spec, _ in fields:
            if spec and "{" in spec:
                raise TemplateBudgetError("nested replacement fields are not allowed in formats")
            for number in _SPEC_NUMBER.findall(spec or ""):
                self._check_number(int(number))

    def _guard_filter(self, name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
        sized = name in _SIZED_FILTERS

        @wraps(filter_)  # keeps jinja's pass_context / pass_environment marks
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.charge()
            if sized:
                for arg in (*args[1:], *kwargs.values()):
                    self._check_number(arg)
            if name == "wordwrap":  # textwrap's work grows with the lines it makes
                text = next((a for a in args if isinstance(a, str)), "")
                width = next((a for a in (*args, *kwargs.values()) if isinstance(a, int)), 79)
                self.charge(len(text) // max(1, width))
            if name == "format" and args and isinstance(args[0], str):
                self._check_percent(args[0])
            return self._checked(filter_(*args, **kwargs))

        return guarded


@lru_cache(maxsize=1024)
def _percent_width(fmt: str) -> int:
    """The widest width or precision in a ``%`` format; -1 for a ``*`` (given at run time)."""
    widest = 0
    for match in _PERCENT.finditer(fmt):
        for number in match.groups():
            if number == "*":
                return -1
            if number is not None:
                widest = max(widest, int(number))
    return widest


class _Budgeted(NodeTransformer):
    """Rewrites a parsed template: loops iterate through ``budget_iter``, ``~`` is
    ``budget_concat``; both are calls, so the sandbox's ``call`` sees them too."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - jinja's visitor names
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("budget_iter"), [node.iter], [], None, None
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("budget_concat"), node.nodes, [], None, None)


class BudgetedTemplate(Template):
    """A template whose every render starts with a full budget."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        _start(self.environment)
        return super().render(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Iterator[str]:
        _start(self.environment)
        return super().generate(*args, **kwargs)


def _start(environment: Any) -> None:
    if isinstance(environment, GuardedSandbox):
        environment.start()


GuardedSandbox.template_class = BudgetedTemplate
