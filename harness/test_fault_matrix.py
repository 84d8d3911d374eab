"""The fault matrix: rows from scenarios (xdist workers too), one table at the end, JSON and HTML."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from natlab.report import fault_matrix
from natlab.report.fault_matrix import FaultRow

REPO = Path(__file__).resolve().parents[1]


def test_a_row_recorded_by_a_test_that_failed_counts_as_not_survived() -> None:
    row = FaultRow("s", "terminate", "served", True, 1.5)
    properties = [(fault_matrix.PROPERTY, row.to_json()), ("other", "x")]
    assert fault_matrix.rows_from_properties(properties, passed=True) == [row]
    assert fault_matrix.rows_from_properties(properties, passed=False)[0].passed is False


def test_the_text_table_has_one_line_per_fault_and_says_which_failed() -> None:
    rows = [FaultRow("a", "terminate", "served", True, 3.456), FaultRow("b", "imds down", "hung", False)]
    text = fault_matrix.render_text(rows).splitlines()
    assert len(text) == 4
    assert "3.46 s" in text[2] and text[2].endswith("ok")
    assert "—" in text[3] and text[3].endswith("FAILED")


def test_json_and_html_are_written_with_every_row_escaped(tmp_path: Path) -> None:
    rows = [FaultRow("<a>", "terminate", "served", True, 1.0, "outage 0.50 s")]
    page = fault_matrix.write(tmp_path, rows)
    assert json.loads((tmp_path / fault_matrix.JSON_FILE).read_text())[0]["scenario"] == "<a>"
    html = page.read_text()
    assert "&lt;a&gt;" in html and "<a>" not in html and "outage 0.50 s" in html


def test_a_run_prints_the_matrix_from_its_workers_and_writes_it(tmp_path: Path) -> None:
    tests = tmp_path / "test_faults.py"
    tests.write_text(
        textwrap.dedent(
            """
            def test_one(record_fault):
                record_fault("terminate", "served", 2.0)

            def test_two(record_fault):
                record_fault("imds down", "abandoned")
                assert False, "this scenario failed"
            """
        )
    )
    reports = tmp_path / "reports"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(tests), "-p", "natlab.pytest_plugin", "-n", "2", "-p", "no:randomly",
         "--report-dir", str(reports), "--rootdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert "fault matrix" in run.stdout
    rows = {r["scenario"]: r for r in json.loads((reports / fault_matrix.JSON_FILE).read_text())}
    assert rows["test_one"]["passed"] is True and rows["test_one"]["recovery_seconds"] == 2.0
    assert rows["test_two"]["passed"] is False


def test_counts_stay_numbers_in_the_json_and_show_in_both_tables(tmp_path: Path) -> None:
    counts = {"flows": 300, "survived": 0, "reset": 300, "hung": 0, "udp lost": 812}
    row = FaultRow("flows", "terminate", "300 flows: 0 survived, 300 reset", True, 4.2, "", counts)
    assert FaultRow.from_json(row.to_json()) == row
    text = fault_matrix.render_text([row, FaultRow("b", "imds down", "abandoned", True)]).splitlines()
    assert text[0].split()[-1] == "counts"
    assert text[2].endswith("flows 300, survived 0, reset 300, hung 0, udp lost 812")
    assert text[3].endswith("ok"), "a row without counts has none to show"
    page = fault_matrix.write(tmp_path, [row])
    assert json.loads((tmp_path / fault_matrix.JSON_FILE).read_text())[0]["counts"]["reset"] == 300
    assert "reset 300" in page.read_text()
