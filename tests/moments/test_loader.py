"""The playbook loader: good files load, bad ones fail with the file, line, column and reason."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import Field

from momently.errors import ConfigError
from momently.moments import loader
from momently.moments.loader import (
    MAX_ALIAS_NODES,
    MAX_BYTES,
    MAX_DEPTH,
    SCHEMA_DIALECT,
    Loc,
    PlaybookError,
    Problem,
    json_schema,
    load_file,
    load_text,
    load_yaml,
    problem_at,
)
from momently.moments.spec import Duration, SpecModel


class Window(SpecModel):
    over: Duration
    count: int = 1


class Condition(SpecModel):
    event: str
    op: Literal["count", "sum", "distinct"] = "count"
    window: Window | None = None


class MomentDef(SpecModel):
    name: str
    kind: Literal["know", "go", "do", "buy", "friction", "context"]
    when: list[Condition]
    cooldown: Duration = 0


class Circle(SpecModel):
    shape: Literal["circle"]
    radius: float


class Polygon(SpecModel):
    shape: Literal["polygon"]
    points: list[tuple[float, float]]


class Place(SpecModel):
    area: Annotated[Circle | Polygon, Field(discriminator="shape")]


class Book(SpecModel):
    version: int = 1
    moments: list[MomentDef] = []
    places: dict[str, Place] = {}


GOOD = """\
version: 2
moments:
  - name: toaster-research
    kind: know
    cooldown: 2h
    when:
      - event: Products Searched
        window: {over: 30m, count: 2}
  - name: cart-abandoned
    kind: buy
    when:
      - event: Product Added
        op: count
places:
  store12:
    area: {shape: circle, radius: 80.5}
  mall:
    area:
      shape: polygon
      points: [[0, 0], [0, 1], [1, 1]]
"""


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's event parser and with PyYAML's pure-Python fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(loader, "_CParser", None)
    elif vars(loader)["_CParser"] is None:
        pytest.skip("PyYAML is built without libyaml here")
    return str(request.param)


def fails(text: str, source: str = "book.yaml") -> PlaybookError:
    with pytest.raises(PlaybookError) as caught:
        load_text(Book, text, source=source)
    return caught.value


def column_of(text: str, line: int, needle: str) -> int:
    return text.splitlines()[line - 1].index(needle) + 1


def only(error: PlaybookError) -> Problem:
    assert len(error.problems) == 1, error.report()
    return error.problems[0]


@pytest.mark.usefixtures("parser")
def test_a_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_text(GOOD, encoding="utf-8")
    book = load_file(Book, path)
    assert book.version == 2
    assert book.moments[0].cooldown == 2 * 3_600_000
    window = book.moments[0].when[0].window
    assert window is not None and (window.over, window.count) == (1_800_000, 2)
    assert isinstance(book.places["store12"].area, Circle)
    area = book.places["mall"].area
    assert isinstance(area, Polygon) and area.points[2] == (1.0, 1.0)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    assert load_file(Book, path).version == 2


@pytest.mark.usefixtures("parser")
def test_a_wrong_type_deep_in_a_list_names_line_column_and_path() -> None:
    text = GOOD.replace("{over: 30m, count: 2}", "{over: 30m, count: lots}")
    problem = only(fails(text))
    assert (problem.line, problem.column) == (8, column_of(text, 8, "lots"))
    assert problem.where == "moments[0].when[0].window.count"
    assert problem.reason.startswith("Input should be a valid integer")
    assert problem.reason.endswith("(got 'lots')")


def test_a_literal_names_the_choices_and_what_was_written() -> None:
    problem = only(fails(GOOD.replace("op: count", "op: cnt")))
    assert (problem.line, problem.column) == (13, 13)
    assert problem.where == "moments[1].when[0].op"
    assert problem.reason == "Input should be 'count', 'sum' or 'distinct' (got 'cnt')"


def test_a_validator_message_is_kept_without_pydantic_prefix_or_repeats() -> None:
    problem = only(fails(GOOD.replace("cooldown: 2h", "cooldown: soon")))
    assert (problem.line, problem.where) == (5, "moments[0].cooldown")
    assert problem.reason == "'soon' is not a duration such as '90s', '30m', '2h' or '1d'"


def test_a_mapping_where_a_value_belongs_says_so() -> None:
    problem = only(fails(GOOD.replace("version: 2", "version:\n  major: 2")))
    assert problem.where == "version"
    assert problem.reason.endswith("(got a mapping)")


def test_an_unknown_key_gives_its_line_and_a_suggestion() -> None:
    problem = only(fails(GOOD.replace("    cooldown: 2h", "    cooldwn: 2h")))
    assert (problem.line, problem.column) == (5, 5)
    assert problem.where == "moments[0]"
    assert problem.reason == "unknown key 'cooldwn'; did you mean 'cooldown'?"


def test_an_unknown_key_inside_a_tagged_union_suggests_from_that_member() -> None:
    error = fails(GOOD.replace("radius: 80.5", "radiuss: 80.5"))
    assert [(p.line, p.where, p.reason) for p in error.problems] == [
        (16, "places.store12.area", "missing required key 'radius'"),
        (16, "places.store12.area", "unknown key 'radiuss'; did you mean 'radius'?"),
    ]
    assert error.problems[1].column == column_of(GOOD, 16, "radius")


def test_an_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    problem = only(fails("version: 1\nzebra: true\n"))
    assert (problem.line, problem.column, problem.where) == (2, 1, "")
    assert problem.reason == "unknown key 'zebra'; expected one of: moments, places, version"


def test_a_missing_key_points_at_its_parent() -> None:
    problem = only(fails(GOOD.replace("    kind: know\n", "")))
    assert (problem.line, problem.where) == (3, "moments[0]")
    assert problem.reason == "missing required key 'kind'"


@pytest.mark.usefixtures("parser")
def test_a_duplicate_key_is_refused_at_the_duplicate() -> None:
    text = GOOD.replace("    kind: know\n", "    kind: know\n    kind: buy\n")
    problem = only(fails(text))
    assert (problem.line, problem.column, problem.where) == (5, 5, "moments[0]")
    assert problem.reason == "duplicate key 'kind' (first written at line 4)"


@pytest.mark.usefixtures("parser")
def test_a_yaml_syntax_error_reports_its_own_line() -> None:
    problem = only(fails("version: 1\nmoments:\n  - name: [unclosed\n  - name: x\n"))
    assert problem.line is not None and problem.line >= 3
    assert problem.reason.startswith("invalid YAML: ")


@pytest.mark.usefixtures("parser")
def test_a_tab_indent_is_a_syntax_error_with_line_and_column() -> None:
    problem = only(fails("version: 1\nmoments:\n\t- name: x\n"))
    assert (problem.line, problem.column) == (3, 1)
    assert "invalid YAML" in problem.reason


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as caught:
        load_file(Book, tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="is a directory"):
        load_file(Book, tmp_path)


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_bytes(b"version: 1\nmoments: []\n# caf\xe9\n")
    with pytest.raises(PlaybookError) as caught:
        load_file(Book, path)
    problem = only(caught.value)
    assert (problem.line, problem.column) == (3, 6)
    assert "not UTF-8" in problem.reason and "0xe9" in problem.reason


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "book.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES + b"\nversion: 1\n")
    with pytest.raises(PlaybookError, match="larger than 1 MiB"):
        load_file(Book, path)
    with pytest.raises(PlaybookError, match="larger than 1 MiB"):
        load_text(Book, "# " + "é" * (MAX_BYTES // 2) + "\n")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_an_empty_playbook_is_a_clear_error(text: str) -> None:
    assert str(fails(text)) == "book.yaml: the playbook is empty"


@pytest.mark.parametrize(
    ("text", "got"), [("- a\n- b\n", "a list"), ("just words\n", "'just words'"), ("3\n", "3")]
)
def test_the_top_level_must_be_a_mapping(text: str, got: str) -> None:
    problem = only(fails(text))
    assert (problem.line, problem.column) == (1, 1)
    assert problem.reason == f"the top level must be a mapping of keys to values (got {got})"


@pytest.mark.usefixtures("parser")
def test_aliases_and_merge_keys_share_settings() -> None:
    text = """\
defaults: &defaults
  kind: buy
  cooldown: 1h
moments:
  - <<: *defaults
    name: a
    when: &searched [{event: Products Searched}]
  - <<: *defaults
    name: b
    cooldown: 5m
    when: *searched
"""
    data, _ = load_yaml(text, source="book.yaml")
    del data["defaults"]
    book = Book.model_validate(data)
    assert [(m.name, m.kind, m.cooldown) for m in book.moments] == [
        ("a", "buy", 3_600_000),
        ("b", "buy", 300_000),
    ]
    assert book.moments[1].when == book.moments[0].when


def test_an_error_inside_merged_settings_points_at_the_anchor() -> None:
    text = "base: &base {kind: nope}\nmoments:\n  - <<: *base\n    name: a\n    when: []\n"
    error = fails(text)
    kinds = [p for p in error.problems if p.where == "moments[0].kind"]
    assert len(kinds) == 1 and (kinds[0].line, kinds[0].column) == (1, 20)


@pytest.mark.usefixtures("parser")
def test_an_alias_bomb_is_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    error = fails("\n".join(lines) + "\n")
    assert f"aliases expand to more than {MAX_ALIAS_NODES} values" in str(error)


@pytest.mark.usefixtures("parser")
def test_a_recursive_alias_is_refused() -> None:
    assert f"nested deeper than {MAX_DEPTH} levels" in str(fails("a: &a [*a]\n"))


@pytest.mark.usefixtures("parser")
def test_deep_nesting_is_refused_before_it_recurses() -> None:
    for text in [
        "[" * 5000 + "]" * 5000,
        "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200)),
    ]:
        problem = only(fails(text))
        assert f"nested deeper than {MAX_DEPTH} levels" in problem.reason
        assert problem.line is not None


@pytest.mark.usefixtures("parser")
@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("version: !!python/object/apply:os.system [echo hi]\n", "unsupported YAML tag"),
        ("version: !!python/name:os.system\n", "could not determine a constructor"),
        ("version: !!set {a, b}\n", "unsupported YAML tag"),
        ("version: 2024-13-45\n", "cannot read '2024-13-45'"),
        ("version: !!int abc\n", "cannot read 'abc'"),
        ("? [a, b]\n: 1\n", "a key must be a plain value"),
    ],
)
def test_unsafe_or_unreadable_values_are_refused_with_a_line(text: str, reason: str) -> None:
    problem = only(fails(text))
    assert reason in problem.reason and problem.line in (1, 2), problem


@pytest.mark.usefixtures("parser")
def test_a_control_character_is_refused_with_its_line() -> None:
    problem = only(fails("# café ☕\nmoments: [é, \x00]\n"))
    assert (problem.line, problem.column) == (2, 14)
    assert "#x0000" in problem.reason
    problem = only(fails("version: 1 # \udcff\n"))
    assert (problem.line, problem.column, problem.reason) == (
        1,
        14,
        "character #xdcff is not allowed in YAML",
    )


@pytest.mark.usefixtures("parser")
def test_several_problems_are_all_listed_in_file_order() -> None:
    text = (
        GOOD.replace("op: count", "op: cnt")
        .replace("    cooldown: 2h", "    cooldwn: 2h")
        .replace("radius: 80.5", "radius: far")
    )
    error = fails(text)
    assert [(p.line, p.where) for p in error.problems] == [
        (5, "moments[0]"),
        (13, "moments[1].when[0].op"),
        (16, "places.store12.area.radius"),
    ]
    assert error.report().splitlines() == [str(p) for p in error.problems]
    assert str(error) == str(error.problems[0])


def test_str_is_file_line_column_where_reason() -> None:
    error = fails(GOOD.replace("op: count", "op: cnt"), source="playbook.yaml")
    assert str(error) == (
        "playbook.yaml:13:13: moments[1].when[0].op: "
        "Input should be 'count', 'sum' or 'distinct' (got 'cnt')"
    )
    assert isinstance(error, ConfigError)
    assert str(Problem("p.yaml", None, None, "", "boom")) == "p.yaml: boom"


def test_an_error_survives_pickling() -> None:
    error = fails("zebra: 1\n")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.problems, str(copy)) == (error.path, error.problems, str(error))


def test_a_semantic_check_points_at_the_offending_line() -> None:
    def check(book: Book) -> Iterator[tuple[Loc, str]]:
        for i, moment in enumerate(book.moments):
            for j, condition in enumerate(moment.when):
                if condition.event not in {"Products Searched"}:
                    yield ("moments", i, "when", j, "event"), f"unknown event {condition.event!r}"

    with pytest.raises(PlaybookError) as caught:
        load_text(Book, GOOD, source="book.yaml", check=check)
    assert str(caught.value) == (
        "book.yaml:12:16: moments[1].when[0].event: unknown event 'Product Added'"
    )
    assert load_text(Book, GOOD.replace("Product Added", "Products Searched"), check=check)


def test_problem_at_falls_back_to_the_nearest_written_parent() -> None:
    _, lines = load_yaml(GOOD, source="book.yaml")
    problem = problem_at(lines, ("places", "mall", "area", "colour"), "no such thing")
    assert (problem.line, problem.column, problem.where) == (18, 5, "places.mall.area")
    quoted = problem_at(lines, ("places", "my store", 3), "x")
    assert (quoted.line, quoted.where) == (14, "places")


def test_json_schema_is_published_with_dialect_id_and_title() -> None:
    schema = json_schema(Book)
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].startswith("https://") and schema["title"] == "momently playbook"
    assert set(schema["properties"]) == {"version", "moments", "places"}
    assert schema["additionalProperties"] is False and "$defs" in schema


YAMLISH = st.text(alphabet=" \n\t:-?[]{},&*!|>'\"#%@`<~.0123456789abcxyz\\\u00e9\U0001f600\x00")


def _assert_clean(text: str) -> None:
    try:
        load_text(Book, text)
    except PlaybookError as error:
        assert error.problems and all(isinstance(p, Problem) for p in error.problems)
        assert str(error)


@given(st.text())
def test_junk_text_never_crashes(text: str) -> None:
    _assert_clean(text)


@given(YAMLISH)
def test_yaml_like_junk_never_crashes(text: str) -> None:
    _assert_clean(text)


DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["version", "moments", "places", "name", "when", "kind", "area", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(DATA)
def test_wrong_shaped_data_never_crashes(data: object) -> None:
    _assert_clean(yaml.safe_dump(data))
