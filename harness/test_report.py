"""The failover report: timeline recording, boot-log parsing, table/SVG/HTML, real-AWS projection.

Fast and offline: timelines are built on a fake clock; nothing is launched.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from natlab.report.export import write_report
from natlab.report.page import TEMPLATES, render_html
from natlab.report.projection import (
    API_ROUND_TRIPS,
    FAULTS,
    LABEL,
    PATHS,
    Assumptions,
    ScriptMeasurement,
    project,
    project_all,
    project_paths,
)
from natlab.report.summary import Scenario, key_durations
from natlab.report.svg import STEP_COLOURS, render_svg, step_colours
from natlab.report.table import render_projection, render_table
from natlab.report.timeline import Timeline, format_wall

T0_WALL = 1795816200.0  # a fixed UTC instant; the fake monotonic clock starts at 1000
MONO0 = 1000.0
SVG_NS = "{http://www.w3.org/2000/svg}"


def boot_log(start: float, steps: list[tuple[str, float]], last: str = "done") -> str:
    """A boot-script log starting `start` s after t0, one start/done pair per step."""
    lines, t = [], start
    for index, (name, seconds) in enumerate(steps):
        lines.append(f"{format_wall(T0_WALL + t)} nat-boot: step={name} start")
        t += seconds
        verb = last if index == len(steps) - 1 else "done"
        lines.append(f"{format_wall(T0_WALL + t)} nat-boot: step={name} {verb}")
    return "\n".join(lines) + "\n"


def new_timeline() -> Timeline:
    return Timeline(clock=lambda: MONO0, wall_clock=lambda: T0_WALL)


STEPS = [
    ("identity", 0.03),
    ("forwarding", 0.01),
    ("masquerade", 0.04),
    ("source-dest-check", 0.8),
    ("routes", 1.6),
    ("lifecycle", 0.02),
    ("facts", 0.8),
]


@pytest.fixture
def failover() -> Timeline:
    """Initial NAT boots, is terminated at t+6, the replacement boots and takes the route."""
    tl = new_timeline()
    tl.add_boot_log("i-old", boot_log(0.5, STEPS))
    tl.mark("fault-injected", "fault", "terminate i-old", at=MONO0 + 6.0)
    tl.mark("replacement-launched", "autoscaling", "i-new", at=MONO0 + 6.2)
    tl.add_boot_log("i-new", boot_log(6.7, STEPS))
    tl.mark("route-switched", "router", "rtb-1 -> eni-new", at=MONO0 + 9.3)
    tl.add_span("outage", MONO0 + 6.01, MONO0 + 9.35, "probe", "ping <10.0.1.10> & co")
    return tl


@pytest.fixture
def scenario() -> Scenario:
    return Scenario("terminate one NAT", "moto", 1, "terminate", 180.0, True, "route moved")


# ---- timeline ---------------------------------------------------------------------------


def test_boot_log_lines_become_step_spans_on_the_timeline_clock() -> None:
    tl = new_timeline()
    text = "cloud-init noise\n" + boot_log(2.0, [("identity", 0.25), ("routes", 1.5)])
    tl.add_boot_log("i-1", text)
    by_name = {e.name: e for e in tl.events()}
    assert set(by_name) == {"boot-started", "step:identity", "step:routes", "boot-finished"}
    assert by_name["boot-started"].t == pytest.approx(2.0, abs=1e-3)
    assert (by_name["step:routes"].t, by_name["step:routes"].end) == pytest.approx((2.25, 3.75), abs=1e-3)
    assert by_name["boot-finished"].t == pytest.approx(3.75, abs=1e-3)
    assert {e.source for e in tl.events()} == {"boot:i-1"}


def test_error_line_fails_its_step_and_the_boot() -> None:
    tl = new_timeline()
    text = boot_log(1.0, [("identity", 0.1), ("routes", 0.5)], last="error line=88")
    text = text.replace(
        "step=routes error",
        f"step=routes replace-route refused\n{format_wall(T0_WALL + 1.4)} nat-boot: step=routes error",
    )
    text += f"{format_wall(T0_WALL + 1.7)} nat-boot: complete-lifecycle-action ABANDON\n"
    tl.add_boot_log("i-1", text)
    routes = tl.first("step:routes")
    assert routes is not None and routes.failed
    assert "error line=88" in routes.detail
    failed = tl.first("boot-failed")
    assert failed is not None and failed.detail == "step=routes error line=88"
    assert tl.first("boot-finished") is None
    note = tl.first("boot-note")
    assert note is not None and note.detail == "complete-lifecycle-action ABANDON"


def test_step_without_done_line_is_kept_as_unfinished() -> None:
    tl = new_timeline()
    text = boot_log(1.0, [("identity", 0.1)]) + f"{format_wall(T0_WALL + 1.2)} nat-boot: step=routes start\n"
    tl.add_boot_log("i-1", text)
    routes = tl.first("step:routes")
    assert routes is not None and routes.failed and "unfinished" in routes.detail
    assert tl.first("boot-finished") is None


def test_clock_offset_moves_the_instance_log_onto_host_time() -> None:
    tl = new_timeline()
    tl.add_boot_log("i-1", boot_log(5.0, [("identity", 0.1)]), clock_offset=-2.0)
    assert tl.first("boot-started").t == pytest.approx(3.0, abs=1e-3)


def test_marks_are_sorted_and_spans_measure_start_to_end() -> None:
    now = [MONO0]
    tl = Timeline(clock=lambda: now[0], wall_clock=lambda: T0_WALL)
    now[0] = MONO0 + 4.0
    tl.mark("b", "x")
    tl.mark("a", "x", at=MONO0 + 1.0)
    tl.add_span("window", MONO0 + 2.0, MONO0 + 7.0, "probe")
    tl.mark("c", "autoscaling", wall=T0_WALL + 8.0)
    assert [e.name for e in tl.events()] == ["a", "window", "b", "c"]
    assert tl.first("c").t == pytest.approx(8.0)
    assert tl.span("a", "b") == pytest.approx(3.0)
    assert tl.span("a", "window") == pytest.approx(6.0)  # to the end of the span
    assert tl.span("b", "a") is None
    assert tl.span("missing", "b") is None
    assert tl.wall_of(1.5) == "2026-11-27T21:50:01.500Z"


def test_span_rejects_an_end_before_its_start() -> None:
    with pytest.raises(ValueError, match="ends"):
        new_timeline().add_span("outage", MONO0 + 2, MONO0 + 1, "probe")


def test_marks_from_many_threads_are_all_kept() -> None:
    tl = Timeline()

    def worker(n: int) -> None:
        for i in range(200):
            tl.mark(f"e{n}-{i}", f"thread{n}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = tl.events()
    assert len(events) == 1600
    assert len({e.seq for e in events}) == 1600


# ---- report -----------------------------------------------------------------------------


def test_key_durations_follow_the_failover_not_the_first_boot(failover: Timeline) -> None:
    keys = {k.label: k for k in key_durations(failover, 180.0)}
    assert keys["fault → replacement launched"].seconds == pytest.approx(0.2, abs=1e-3)
    assert keys["launch → boot start"].seconds == pytest.approx(0.5, abs=1e-3)
    assert keys["boot start → route switched"].seconds == pytest.approx(2.6, abs=1e-3)
    assert keys["fault → route switched"].seconds == pytest.approx(3.3, abs=1e-3)
    assert "met" in keys["fault → route switched"].note
    assert keys["data-plane outage"].seconds == pytest.approx(3.34, abs=1e-3)


def test_failed_routes_step_is_not_taken_for_a_switched_route() -> None:
    tl = new_timeline()
    tl.mark("fault-injected", "fault", at=MONO0 + 1)
    tl.mark("replacement-launched", "autoscaling", at=MONO0 + 1.1)
    tl.add_boot_log("i-new", boot_log(1.5, [("routes", 0.4)], last="error line=3"))
    keys = {k.label: k for k in key_durations(tl, 180.0)}
    assert keys["fault → route switched"].seconds is None
    assert keys["fault → route switched"].note == "SLA 180 s: not measured"


def test_slow_failover_is_reported_as_missing_the_sla(failover: Timeline) -> None:
    keys = {k.label: k for k in key_durations(failover, 2.0)}
    assert keys["fault → route switched"].note.startswith("SLA 2 s: MISSED by 1.300")


def test_table_lists_every_event_and_the_key_durations(failover: Timeline, scenario: Scenario) -> None:
    table = render_table(failover, scenario)
    rows = table.splitlines()
    for event in failover.events():
        assert any(event.name in row and event.source in row and f"{event.t:.3f}" in row for row in rows), event
    for label in (
        "fault → replacement launched",
        "launch → boot start",
        "boot start → route switched",
        "fault → route switched",
        "data-plane outage",
    ):
        assert label in table
    assert "verdict PASS" in table


def test_svg_is_well_formed_with_one_element_per_event(failover: Timeline, scenario: Scenario) -> None:
    root = ET.fromstring(render_svg(failover, scenario))
    groups = [g for g in root.iter(f"{SVG_NS}g") if g.get("class") == "event"]
    assert len(groups) == len(failover.events())
    assert sorted(g.get("data-name") for g in groups) == sorted(e.name for e in failover.events())
    lanes = [t.text for t in root.iter(f"{SVG_NS}text") if t.get("class") == "lane"]
    assert lanes == [
        "fault injector",
        "auto scaling",
        "boot i-old",
        "boot i-new",
        "router / data plane",
        "probes",
    ]


def test_html_embeds_the_svg_tables_and_labelled_projection(failover: Timeline, scenario: Scenario) -> None:
    projections = project_all(ScriptMeasurement.from_timeline(failover))
    page = render_html(failover, scenario, projections)
    assert "<svg" in page and page.count('class="event"') == len(failover.events())
    assert LABEL in page
    assert "ping &lt;10.0.1.10&gt; &amp; co" in page  # details are escaped, not injected
    assert "<10.0.1.10>" not in page
    for fault in FAULTS:
        assert f"<th>{fault}</th>" in page


def test_html_page_is_the_template_with_escaped_text_and_the_svg_inline(failover: Timeline) -> None:
    hostile = Scenario('<script>alert("x")</script> & co', "moto", 1, verdict="route <moved>")
    page = render_html(failover, hostile, project_all(ScriptMeasurement.from_timeline(failover)))
    template = (TEMPLATES / "report.html.j2").read_text()
    static = [line for line in template.splitlines() if line and not {"{", "}"} & set(line)]
    missing = [line for line in static if line not in page]
    assert not missing, f"page lines not from the template: {missing}"
    assert render_svg(failover, hostile) in page  # the picture, not an escaped copy of it
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in page
    assert "route &lt;moved&gt;" in page


def test_the_modelled_dnf_install_inside_masquerade_is_not_measured_script_work() -> None:
    tl = new_timeline()
    log = boot_log(1.0, [("identity", 0.2), ("masquerade", 0.5)])
    inner = boot_log(1.3, [("install", 0.3)])  # inside masquerade (1.2 s to 1.7 s after t0)
    lines = log.splitlines(keepends=True)
    tl.add_boot_log("i-1", "".join([*lines[:3], inner, *lines[3:]]))
    assert {e.name for e in tl.events()} >= {"step:install", "step:masquerade"}, "the report shows the install"
    measured = ScriptMeasurement.from_timeline(tl)
    assert "install" not in measured.steps
    assert measured.total == pytest.approx(0.2 + 0.2, abs=0.01), measured.steps


def test_step_colours_follow_the_order_of_the_boot_log() -> None:
    tl = new_timeline()
    tl.add_boot_log("i-1", boot_log(1.0, [("routes", 0.5), ("identity", 0.2), ("facts", 0.3)]))
    tl.add_boot_log("i-2", boot_log(5.0, [("identity", 0.2), ("routes", 0.5), ("lifecycle", 0.1)]))
    colours = step_colours(tl)
    assert list(colours) == ["step:routes", "step:identity", "step:facts", "step:lifecycle"]
    assert list(colours.values()) == list(STEP_COLOURS[:4])
    root = ET.fromstring(render_svg(tl, Scenario("steps", "moto", 1)))
    for group in root.iter(f"{SVG_NS}g"):
        name = group.get("data-name", "")
        if name.startswith("step:"):
            bar = group.find(f"{SVG_NS}rect")
            assert bar is not None and bar.get("fill") == colours[name], name


def test_two_reports_of_one_run_colour_each_step_alike(failover: Timeline, scenario: Scenario) -> None:
    rebuilt = Timeline.from_events(failover.events(), failover.t0_wall)
    assert step_colours(rebuilt) == step_colours(failover)
    assert render_svg(rebuilt, scenario) == render_svg(failover, scenario)


def test_svg_stays_well_formed_for_markup_in_names_and_an_empty_timeline(scenario: Scenario) -> None:
    tl = new_timeline()
    tl.add_boot_log("i-<1>", boot_log(1.0, [("routes", 0.4)], last="error \"quoted\" <b> & 'it'"))
    tl.mark("fault-injected", 'fa"ult & <co>', "x<y & 'z'", at=MONO0 + 0.5)
    odd = Scenario("<odd> & 'name'", "moto", 1)
    root = ET.fromstring(render_svg(tl, odd))
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert "<odd> & 'name'" in texts and "boot i-<1>" in texts
    sources = {g.get("data-source") for g in root.iter(f"{SVG_NS}g") if g.get("class") == "event"}
    assert sources == {"boot:i-<1>", 'fa"ult & <co>'}
    empty = ET.fromstring(render_svg(new_timeline(), scenario))
    assert not [g for g in empty.iter(f"{SVG_NS}g") if g.get("class") == "event"]


def test_write_report_writes_page_svg_text_and_json(failover: Timeline, scenario: Scenario, tmp_path: Path) -> None:
    page = write_report(
        tmp_path / "reports", scenario, failover, project_all(ScriptMeasurement.from_timeline(failover))
    )
    assert page == tmp_path / "reports" / "terminate-one-NAT.html"
    data = json.loads(page.with_suffix(".json").read_text())
    assert [e["name"] for e in data["events"]] == [e.name for e in failover.events()]
    assert data["projection"][0]["label"] == LABEL
    ET.parse(page.with_suffix(".svg"))
    assert "real AWS" in page.with_suffix(".txt").read_text()


# ---- projection -------------------------------------------------------------------------


def measured(seconds: float = 2.0, calls: int = 4) -> ScriptMeasurement:
    return ScriptMeasurement(steps={"routes": seconds}, api_round_trips=calls)


@pytest.mark.parametrize("fault", FAULTS)
def test_projection_total_is_the_sum_of_its_parts(fault: str) -> None:
    p = project(fault, measured())
    assert [ph.name for ph in p.phases] == ["detection", "launch", "boot", "script"]
    for ph in p.phases:
        assert ph.low == pytest.approx(sum(f.low for f in ph.figures))
        assert ph.high == pytest.approx(sum(f.high for f in ph.figures))
    assert p.low == pytest.approx(sum(ph.low for ph in p.phases))
    assert p.high == pytest.approx(sum(ph.high for ph in p.phases))
    assert p.low <= p.high
    assert p.sources()


def test_projection_flags_an_sla_breach_when_the_inputs_exceed_it() -> None:
    slow = project("terminate", measured(seconds=400.0, calls=0))
    assert slow.breaches_sla and slow.verdict == "breaches SLA"
    tight = project("terminate", measured(), Assumptions(sla_seconds=60.0))
    assert not tight.breaches_sla and tight.verdict == "may breach SLA"
    assert project("terminate", measured(), Assumptions(sla_seconds=150.0), path="warm-pool").verdict == "within SLA"


def test_status_check_detection_is_the_groups_own_health_check() -> None:
    default = project("status-check", measured()).phase("detection")
    slower = project("status-check", measured(), Assumptions(asg_detect_impaired=(180.0, 360.0))).phase("detection")
    assert (slower.low - default.low, slower.high - default.high) == pytest.approx((60.0, 60.0))
    assert {f.source for f in default.figures} == {"ec2-status", "asg-impaired", "asg-maintenance"}


def test_api_round_trips_follow_the_steps_that_ran() -> None:
    steps = {"identity": 0.05, "source-dest-check": 0.02, "elastic-ip": 0.01, "routes": 0.03, "lifecycle": 0.02}
    assert ScriptMeasurement.from_steps(steps).api_round_trips == 5
    assert ScriptMeasurement.from_steps(steps, elastic_ip=False).api_round_trips == 3
    m = ScriptMeasurement.from_steps(steps)
    assert m.local_work == pytest.approx(0.13)  # the lab's own calls stay in the measured work


def test_measurement_comes_from_the_replacement_boot(failover: Timeline) -> None:
    m = ScriptMeasurement.from_timeline(failover)
    assert m.steps["routes"] == pytest.approx(1.6, abs=1e-3)
    assert m.api_round_trips == sum(API_ROUND_TRIPS.get(step, 0) for step in m.steps)


def test_each_path_models_how_its_replacement_comes_to_serve() -> None:
    cold, baked, warm = project_paths("terminate", measured())
    assert [p.path for p in (cold, baked, warm)] == list(PATHS)
    what = {p.path: [f.what for ph in p.phases for f in ph.figures] for p in (cold, baked, warm)}
    assert any("dnf install" in w for w in what["cold-default"])
    assert not any("dnf install" in w for w in what["cold-baked"] + what["warm-pool"])
    assert any("warm instance" in w for w in what["warm-pool"]) and any("systemd unit" in w for w in what["warm-pool"])
    assert not any("user data" in w for w in what["warm-pool"])
    assert warm.high < baked.high < cold.high


def test_the_projection_is_shown_next_to_the_published_times_it_competes_with() -> None:
    text = render_projection(project_all(measured(), path="warm-pool"))
    assert PATHS["warm-pool"] in text
    assert "seed script (2015 blog post) ~3 min" in text and "fck-nat in HA mode ~5 min" in text


def test_unknown_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="path must be one of cold-default, cold-baked, warm-pool"):
        project("terminate", measured(), path="hot")


def test_unknown_fault_is_rejected() -> None:
    with pytest.raises(ValueError, match="fault must be one of"):
        project("reboot", measured())
