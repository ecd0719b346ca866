"""The HTML report: one offline page with the table and the charts."""

from __future__ import annotations

import re
from pathlib import Path

from momently.simulate import (
    BatchAndBlast,
    EventTriggers,
    NoMessages,
    Population,
    compare,
    true_effect,
    write_report,
)


def test_report_is_self_contained_html_with_table_and_charts(tmp_path: Path) -> None:
    people = Population(60, seed=1)
    results = compare([NoMessages(), BatchAndBlast(), EventTriggers()], people, days=2)
    truth = {r.policy: true_effect(r, results[0]) for r in results}
    path = write_report(tmp_path / "report.html", results, notes=["a <small> run"], truth=truth)
    page = path.read_text("utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 6
    for r in results:
        assert f"<td>{r.policy}</td>" in page
    assert "a &lt;small&gt; run" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "nothing fetched"
    assert "true lift" in page
