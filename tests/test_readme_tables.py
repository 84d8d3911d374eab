"""The README's inputs/outputs tables are generated from variables.tf and outputs.tf, never hand-edited."""

from __future__ import annotations

from pathlib import Path

from natlab.module import readme_tables, rejected_inputs

README = readme_tables.REPO_ROOT / "README.md"


def test_readme_tables_match_variables_and_outputs() -> None:
    in_readme = readme_tables.current_tables(README.read_text(encoding="utf-8"))
    generated = readme_tables.render_tables()
    assert in_readme == generated, (
        "README.md inputs/outputs tables differ from variables.tf/outputs.tf; "
        "run `python -m natlab.module.readme_tables --write`"
    )


def test_every_input_has_a_sentence_description_and_a_type() -> None:
    for item in readme_tables.read_inputs():
        assert item.description.endswith("."), f"variable {item.name}: description must be a full sentence"
        assert item.type != "any", f"variable {item.name}: type must be declared"


def test_every_output_has_a_sentence_description() -> None:
    for item in readme_tables.read_outputs():
        assert item.description.endswith("."), f"output {item.name}: description must be a full sentence"


def test_required_inputs_are_exactly_those_without_default() -> None:
    required = [item.name for item in readme_tables.read_inputs() if item.required]
    assert required == ["name", "vpc_id", "zones"], "only name, vpc_id and zones may be required"


def test_write_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Title\n\nbefore\n\n{readme_tables.BEGIN_MARKER}\nstale\n{readme_tables.END_MARKER}\n\nafter\n"
        f"{rejected_inputs.BEGIN_MARKER}\n{rejected_inputs.END_MARKER}\n",
        encoding="utf-8",
    )
    assert readme_tables.main(["--readme", str(readme), "--check"]) == 1
    assert readme_tables.main(["--readme", str(readme), "--write"]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nbefore\n\n")
    assert f"{readme_tables.END_MARKER}\n\nafter\n{rejected_inputs.BEGIN_MARKER}\n" in text
    assert readme_tables.main(["--readme", str(readme), "--check"]) == 0


def test_readme_lists_every_rejects_run_with_what_stops_it() -> None:
    tests_dir = readme_tables.REPO_ROOT / "tests"
    runs = [
        line
        for path in tests_dir.glob("*.tftest.hcl")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith('run "rejects_')
    ]
    rejections = rejected_inputs.read_rejections(tests_dir)
    assert len(rejections) == len(runs) > 0
    assert all(item.rejected_by for item in rejections), "a rejects_ run without expect_failures proves nothing"
    in_readme = readme_tables.current_tables(
        README.read_text(encoding="utf-8"), rejected_inputs.BEGIN_MARKER, rejected_inputs.END_MARKER
    )
    assert in_readme == rejected_inputs.render_list(tests_dir), "run `python -m natlab.module.readme_tables --write`"
