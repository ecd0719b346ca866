"""Load a YAML playbook into a pydantic model, or fail with the file, line and reason.

Generic over the model class: ``load_file(Playbook, "playbook.yaml")``. Loading is
all or nothing — every problem found is raised at once in one :class:`PlaybookError`
and nothing half-built is returned, so a server never starts half-configured.

YAML is read with PyYAML's *safe* machinery only (plain data: no Python objects).
On top of it the loader refuses what PyYAML lets through silently:

- a duplicate key (PyYAML keeps the last one; the loader reports the duplicate's line);
- a file over :data:`MAX_BYTES` (1 MiB) or nested deeper than :data:`MAX_DEPTH`;
- alias bombs: anchors, aliases and ``<<`` merge keys are *allowed* (they are handy for
  sharing a block of settings), but everything reached through aliases counts towards
  :data:`MAX_ALIAS_NODES`, so "billion laughs" fails fast with a clear reason.

Validation errors point at the line of the offending key or value, in plain words
(``unknown key 'cooldwn'; did you mean 'cooldown'?``). Cross-reference checks that need
the whole model run after validation: pass ``check=`` to :func:`load_file`, or build a
:class:`Problem` with :func:`problem_at`. :func:`json_schema` gives the schema to publish.

>>> from momently.moments.spec import SpecModel
>>> class Demo(SpecModel):
...     name: str
...     every: int = 1
>>> load_text(Demo, "name: doughnuts\\nevery: 3\\n")
Demo(name='doughnuts', every=3)
>>> try:
...     load_text(Demo, "name: doughnuts\\nevry: 3\\n", source="demo.yaml")
... except PlaybookError as error:
...     print(error)
demo.yaml:2:1: unknown key 'evry'; did you mean 'every'?
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from momently.errors import ConfigError

try:
    from yaml._yaml import CParser as _CParser
except ImportError:  # PyYAML built without libyaml: its pure-Python parser does the job
    _CParser = None  # type: ignore[assignment,misc]

MAX_BYTES: Final = 1 << 20
_TOO_BIG: Final = f"larger than {MAX_BYTES / (1 << 20):g} MiB"
MAX_DEPTH: Final = 64
MAX_ALIAS_NODES: Final = 10_000
SCHEMA_ID: Final = "https://momently.dev/schema/playbook.json"
SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

M = TypeVar("M", bound=BaseModel)
Loc = tuple[Hashable, ...]
"""A location in the loaded data: mapping keys and list indexes, as in pydantic's ``loc``."""
Check = Callable[[M], Iterable[tuple[Loc, str]]]
"""A semantic check run on the loaded model: yields ``(loc, reason)`` for each problem."""

_MERGE: Final = "tag:yaml.org,2002:merge"
_PLAIN_TAGS: Final = ("tag:yaml.org,2002:seq", "tag:yaml.org,2002:map")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PREFIXES: Final = ("Value error, ", "Assertion failed, ")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a playbook, and where: ``playbook.yaml:12:5: moments[3]: reason``."""

    path: str
    line: int | None
    column: int | None
    where: str
    reason: str

    def __str__(self) -> str:
        at = self.path if self.line is None else f"{self.path}:{self.line}:{self.column}"
        return f"{at}: {self.where}: {self.reason}" if self.where else f"{at}: {self.reason}"


class PlaybookError(ConfigError):
    """A playbook that cannot be loaded; ``str()`` is the first problem, ``.problems`` all."""

    def __init__(self, path: str, problems: Iterable[Problem]) -> None:
        ordered = sorted(problems, key=lambda p: (p.line or 0, p.column or 0, p.where, p.reason))
        if not ordered:
            raise ValueError("a PlaybookError needs at least one problem")
        super().__init__(str(ordered[0]))
        self.path = path
        self.problems = ordered

    def report(self) -> str:
        """Every problem, one per line, in file order."""
        return "\n".join(str(problem) for problem in self.problems)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problems))


@dataclass(frozen=True)
class LineMap:
    """Where each mapping key and each value of the loaded data is written (1-based)."""

    source: str
    keys: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)
    values: Mapping[Loc, tuple[int, int]] = field(default_factory=dict)

    def resolve(self, loc: Sequence[Hashable]) -> Loc:
        """The longest written path along ``loc``, skipping pydantic's union tags."""
        path: Loc = ()
        for part in loc:
            if path + (part,) in self.values:
                path = path + (part,)
        return path

    def mark(self, path: Loc, *, key: bool = False) -> tuple[int, int] | None:
        """Line and column of ``path``: its value if written beside its key, else the key."""
        at_key, at_value = self.keys.get(path), self.values.get(path)
        # A block mapping or list "starts" at its first child, a line below its key.
        if at_key is not None and (key or at_value is None or at_value[0] != at_key[0]):
            return at_key
        return at_value


def problem_at(lines: LineMap, loc: Sequence[Hashable], reason: str) -> Problem:
    """A :class:`Problem` at the line of ``loc``, for checks that run after validation."""
    path = lines.resolve(loc)
    line, column = lines.mark(path) or (None, None)
    return Problem(lines.source, line, column, dotted(path), reason)


def dotted(path: Sequence[Hashable]) -> str:
    """``('moments', 3, 'window')`` → ``'moments[3].window'``."""
    out = ""
    for part in path:
        if isinstance(part, str) and _NAME.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{_show(part) or '…'}]" if not isinstance(part, int) else f"[{part}]"
    return out


def load_file(model: type[M], path: str | Path, *, check: Check[M] | None = None) -> M:
    """Read a UTF-8 YAML file and load it into ``model``; raise :class:`PlaybookError`."""
    source = str(path)
    try:
        with Path(path).open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise _fail(source, "file not found") from None
    except IsADirectoryError:
        raise _fail(source, "is a directory, not a playbook file") from None
    except OSError as error:
        raise _fail(source, f"cannot read the file: {error.strerror or error}") from None
    if len(raw) > MAX_BYTES:
        raise _fail(source, f"the file is {_TOO_BIG}")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, column = _line_column(raw, error.start)
        reason = f"not UTF-8 text (byte 0x{raw[error.start]:02x}); save the file as UTF-8"
        raise PlaybookError(source, [Problem(source, line, column, "", reason)]) from None
    return load_text(model, text, source=source, check=check)


def load_text(
    model: type[M], text: str, *, source: str = "<playbook>", check: Check[M] | None = None
) -> M:
    """Load YAML text into ``model``; raise :class:`PlaybookError` naming ``source``."""
    data, lines = load_yaml(text, source=source)
    return parse_model(model, data, lines, source=source, check=check)


def load_yaml(text: str, *, source: str) -> tuple[Any, LineMap]:
    """Plain data from YAML text (safe loader), and where each key and value is written."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise _fail(source, f"the playbook is {_TOO_BIG}")
    try:
        text.encode()
    except UnicodeEncodeError as error:  # a lone surrogate: not text any file can hold
        line, column = _line_column(text, error.start)
        reason = f"character #x{ord(text[error.start]):04x} is not allowed in YAML"
        raise PlaybookError(source, [Problem(source, line, column, "", reason)]) from None
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(source, error) from None
    except yaml.reader.ReaderError as error:
        byte_offsets = _CParser is not None
        line, column = _line_column(text.encode() if byte_offsets else text, error.position)
        reason = f"character #x{error.character:04x} is not allowed in YAML"
        raise PlaybookError(source, [Problem(source, line, column, "", reason)]) from None
    except yaml.YAMLError as error:
        raise _fail(source, f"invalid YAML: {error}") from None
    if node is None:
        return None, LineMap(source)
    walker = _Walker(source)
    data = walker.walk(node, (), 0, in_alias=False)
    if walker.problems:
        raise PlaybookError(source, walker.problems)
    return data, LineMap(source, walker.keys, walker.values)


def parse_model(
    model: type[M], data: Any, lines: LineMap, *, source: str, check: Check[M] | None = None
) -> M:
    """Validate loaded data into ``model``; every problem is raised with its line."""
    if data is None:
        raise _fail(source, "the playbook is empty")
    if not isinstance(data, dict):
        line, column = lines.mark(()) or (None, None)
        reason = f"the top level must be a mapping of keys to values (got {_kind(data)})"
        raise PlaybookError(source, [Problem(source, line, column, "", reason)])
    try:
        result = model.model_validate(data)
    except ValidationError as error:
        errors = error.errors(include_url=False)
        raise PlaybookError(source, [_problem(model, lines, e, source) for e in errors]) from None
    if check is not None:
        problems = [problem_at(lines, loc, reason) for loc, reason in check(result)]
        if problems:
            raise PlaybookError(source, problems)
    return result


def json_schema(
    model: type[BaseModel], *, schema_id: str = SCHEMA_ID, title: str = "momently playbook"
) -> dict[str, Any]:
    """The model's JSON Schema (draft 2020-12), ready to publish for editors and CI."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return {"$schema": SCHEMA_DIALECT, "$id": schema_id, "title": title, **schema}


def _compose(text: str) -> yaml.Node | None:
    composer = _Composer(text)
    try:
        return composer.get_single_node()
    finally:
        composer.dispose()


class _Composer(yaml.composer.Composer, yaml.resolver.Resolver):
    """PyYAML's composer, refusing nesting beyond :data:`MAX_DEPTH` before it recurses.

    Events come from libyaml when it is installed (about eight times faster) and from
    PyYAML's pure-Python parser otherwise. libyaml's own composer is not used: it
    recurses in C with no limit, and a few thousand ``[`` crash the interpreter.
    """

    def __init__(self, text: str) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        # Both readers check every character here, at construction; libyaml's
        # ReaderError.position is then a byte offset into the UTF-8 text.
        self.events: Any = _CParser(text) if _CParser is not None else yaml.SafeLoader(text)

    def check_event(self, *choices: type[yaml.Event]) -> bool:
        return bool(self.events.check_event(*choices))

    def peek_event(self) -> yaml.Event:
        return self.events.peek_event()  # type: ignore[no-any-return]

    def get_event(self) -> yaml.Event:
        return self.events.get_event()  # type: ignore[no-any-return]

    def dispose(self) -> None:
        self.events.dispose()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark: Any = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Walker:
    """Builds plain data from composed nodes, recording marks and structural problems."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: dict[Loc, tuple[int, int]] = {}
        self.values: dict[Loc, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._seen: set[int] = set()
        self._aliased = 0
        self._scalars = yaml.constructor.SafeConstructor()

    def walk(self, node: yaml.Node, path: Loc, depth: int, *, in_alias: bool) -> Any:
        # The same node object reached twice means an alias: count what it expands to.
        if id(node) in self._seen:
            in_alias = True
        self._seen.add(id(node))
        self._aliased += in_alias
        if depth > MAX_DEPTH or self._aliased > MAX_ALIAS_NODES:
            reason = (
                f"nested deeper than {MAX_DEPTH} levels"
                if depth > MAX_DEPTH
                else f"aliases expand to more than {MAX_ALIAS_NODES} values"
            )
            raise PlaybookError(self.source, [self._problem(node, path, reason)])
        self.values[path] = _mark(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if node.tag not in _PLAIN_TAGS:
            self.problems.append(self._problem(node, path, f"unsupported YAML tag {node.tag}"))
            return None
        if isinstance(node, yaml.SequenceNode):
            return [
                self.walk(item, (*path, i), depth + 1, in_alias=in_alias)
                for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        return self._mapping(node, path, depth, in_alias=in_alias)

    def _mapping(self, node: yaml.MappingNode, path: Loc, depth: int, *, in_alias: bool) -> Any:
        result: dict[Any, Any] = {}
        # `<<: *defaults` first, so that the mapping's own keys override merged ones.
        for key_node, value_node in reversed(node.value):
            if key_node.tag == _MERGE:
                sources = (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                )
                for source in reversed(sources):
                    if not isinstance(source, yaml.MappingNode):
                        reason = "'<<' must be followed by a mapping or a list of mappings"
                        self.problems.append(self._problem(source, path, reason))
                        continue
                    result.update(self.walk(source, path, depth + 1, in_alias=in_alias))
        self.values[path] = _mark(node.start_mark)
        first: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                reason = "a key must be a plain value, not a list or a mapping"
                self.problems.append(self._problem(key_node, path, reason))
                continue
            key = self._scalar(key_node, path)
            mark = _mark(key_node.start_mark)
            if key in first:
                reason = f"duplicate key {_show(key) or ''} (first written at line {first[key][0]})"
                self.problems.append(Problem(self.source, *mark, dotted(path), reason))
                continue
            first[key] = self.keys[(*path, key)] = mark
            result[key] = self.walk(value_node, (*path, key), depth + 1, in_alias=in_alias)
        return result

    def _scalar(self, node: yaml.ScalarNode, path: Loc) -> Any:
        try:
            return self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as error:
            detail = getattr(error, "problem", None) or str(error)
            reason = f"cannot read {_show(node.value) or 'this value'}: {detail}"
            self.problems.append(self._problem(node, path, reason))
            return None

    def _problem(self, node: yaml.Node, path: Loc, reason: str) -> Problem:
        return Problem(self.source, *_mark(node.start_mark), dotted(path), reason)


def _problem(model: type[BaseModel], lines: LineMap, error: ErrorDetails, source: str) -> Problem:
    """One pydantic error as a Problem at the nearest written line, in a marketer's words."""
    loc, kind = tuple(error["loc"]), error["type"]
    path = lines.resolve(loc)
    where, at_key = dotted(path), False
    if kind == "missing":
        reason = f"missing required key {(_show(loc[-1]) or '') if loc else ''}".rstrip()
    elif kind == "extra_forbidden" and loc:
        at_key = bool(path) and path[-1] == loc[-1]  # the unknown key is written: point at it
        where, reason = dotted(path[:-1] if at_key else path), f"unknown key {_show(loc[-1]) or ''}"
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        if close:
            reason += f"; did you mean {close[0]!r}?"
        elif 0 < len(known) <= 12:
            reason += f"; expected one of: {', '.join(sorted(known))}"
    else:
        reason = error["msg"]
        for prefix in _PREFIXES:
            reason = reason.removeprefix(prefix)
        got = _show(error.get("input"))
        if got is None and kind.endswith("_type"):
            got = _kind(error.get("input"))
        if got is not None and got not in reason:
            reason += f" (got {got})"
    line, column = lines.mark(path, key=at_key) or (None, None)
    return Problem(source, line, column, where, reason)


def _known_keys(model: type[BaseModel], loc: Sequence[Hashable]) -> list[str]:
    """Field names and aliases of the model(s) pydantic was validating at ``loc``."""
    current: list[Any] = [model]
    for part in loc:
        step = [t for c in _expand(current) for t in _child(c, part)]
        tagged = [c for c in _expand(current) if _is_model(c) and _tags(c, part)]
        current = step or tagged or current  # neither: a union tag pydantic added; skip it
    names: set[str] = set()
    for candidate in _expand(current):
        if _is_model(candidate):
            for name, info in candidate.model_fields.items():
                names.update(n for n in (name, info.alias) if n)
    return sorted(names)


def _expand(types_: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for tp in types_:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            out.extend(_expand([typing.get_args(tp)[0]]))
        elif origin is typing.Union or origin is types.UnionType:
            out.extend(_expand(typing.get_args(tp)))
        else:
            out.append(tp)
    return out


def _child(tp: Any, part: Hashable) -> list[Any]:
    if _is_model(tp):
        for name, info in tp.model_fields.items():
            if part in (name, info.alias):
                return [info.annotation]
        return []
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(origin, type) or not args:
        return []
    if issubclass(origin, Mapping):
        return [args[-1]]
    if issubclass(origin, tuple) and isinstance(part, int):
        if args[-1] is Ellipsis:
            return [args[0]]
        return [args[part]] if 0 <= part < len(args) else []
    if issubclass(origin, Iterable) and isinstance(part, int):
        return [args[0]]
    return []


def _tags(tp: type[BaseModel], part: Hashable) -> bool:
    """Whether ``part`` is how pydantic tags ``tp`` in a union: its name or a Literal value."""
    if part == tp.__name__:
        return True
    return any(
        typing.get_origin(info.annotation) is typing.Literal
        and part in typing.get_args(info.annotation)
        for info in tp.model_fields.values()
    )


def _is_model(tp: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _show(value: object, limit: int = 40) -> str | None:
    """A short repr of a scalar for an error message, or None if it would not help."""
    if isinstance(value, int) and value.bit_length() > 128:
        return None  # repr() of a huge int is slow, and refused past 4300 digits
    if value is None or isinstance(value, bool | int | float | str):
        text = repr(value)
        return text if len(text) <= limit else None
    return None


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return _show(value) or f"a {type(value).__name__}"


def _line_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of an offset into text or UTF-8 bytes."""
    head = text[:offset]
    if isinstance(head, bytes):
        head = head.decode("utf-8", "replace")
    return head.count("\n") + 1, len(head) - (head.rfind("\n") + 1) + 1


def _mark(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _fail(source: str, reason: str) -> PlaybookError:
    return PlaybookError(source, [Problem(source, None, None, "", reason)])


def _syntax_error(source: str, error: yaml.MarkedYAMLError) -> PlaybookError:
    mark = error.problem_mark or error.context_mark
    reason = f"invalid YAML: {error.problem or error.context or 'cannot parse'}"
    if error.problem and "maximum nesting depth" in error.problem:
        # libyaml >= 0.2.5 as bundled by PyYAML 6.0.3+ has its own (deeper) limit and
        # may trip it first; the playbook's limit is the one a user can act on.
        reason = f"nested deeper than {MAX_DEPTH} levels"
    elif error.context and error.problem and error.context_mark is not None:
        reason += f" ({error.context} at line {error.context_mark.line + 1})"
    line, column = _mark(mark) if mark is not None else (None, None)
    return PlaybookError(source, [Problem(source, line, column, "", reason)])
