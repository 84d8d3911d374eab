"""natlab.cloud.systemd_units: what a later start runs is read from the instance's own enabled units."""

from __future__ import annotations

from pathlib import Path

from natlab.cloud.systemd_units import enabled_units, exec_start, start_commands

UNIT = """[Unit]
Description=NAT instance
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/nat-instance start
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
"""


def _etc_with_enabled_unit(tmp_path: Path) -> Path:
    etc = tmp_path / "upper" / "etc"
    unit = etc / "systemd/system/nat-instance.service"
    unit.parent.mkdir(parents=True)
    unit.write_text(UNIT)
    wants = etc / "systemd/system/multi-user.target.wants"
    wants.mkdir()
    (wants / "nat-instance.service").symlink_to("/etc/systemd/system/nat-instance.service")
    return etc


def test_enabled_units_are_the_wants_links_not_the_unit_files(tmp_path: Path) -> None:
    etc = _etc_with_enabled_unit(tmp_path)
    (etc / "systemd/system/disabled.service").write_text(UNIT)
    assert enabled_units(etc) == ["/etc/systemd/system/nat-instance.service"]


def test_exec_start_splits_words_and_drops_systemd_prefixes() -> None:
    text = "[Service]\nExecStart=-/usr/bin/env 'a b' c\nExecStartPre=/bin/false\nExecStart=/bin/true\n"
    assert exec_start(text) == [["/usr/bin/env", "a b", "c"], ["/bin/true"]]


def test_start_commands_read_the_units_through_the_instance_view(tmp_path: Path) -> None:
    etc = _etc_with_enabled_unit(tmp_path)

    def host_path(path: str) -> Path:
        return etc / path.removeprefix("/etc/")

    assert start_commands(etc, host_path) == [["/usr/local/sbin/nat-instance", "start"]]


def test_no_enabled_unit_runs_nothing(tmp_path: Path) -> None:
    assert start_commands(tmp_path, lambda path: tmp_path / path) == []
