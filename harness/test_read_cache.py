"""A read repeated while nothing changed moto is answered from memory; any change makes the next read go to moto."""

from __future__ import annotations

from typing import Any

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.cloud.clients import aws_client
from natlab.cloud.serial_wsgi import changes_at


@pytest.fixture
def served(aws: MotoBackend, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The Action of every request moto itself answers (the wrapper's inner app, counted)."""
    wrapper = aws._server._server.app
    inner, seen = wrapper.app, []

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(environ.get("PATH_INFO", ""))
        return inner(environ, start_response)

    monkeypatch.setattr(wrapper, "app", counting)
    return seen


def test_reads_do_not_count_as_changes_and_writes_do(aws: MotoBackend) -> None:
    ec2, wrapper = aws.client("ec2"), aws._server._server.app
    before = wrapper.changes
    ec2.describe_vpcs()
    ec2.describe_route_tables()
    assert wrapper.changes == before
    ec2.create_vpc(CidrBlock="10.9.0.0/16")
    assert wrapper.changes == before + 1


def test_a_repeated_read_is_answered_from_memory(aws: MotoBackend, served: list[str]) -> None:
    ec2 = aws.client("ec2")
    first = ec2.describe_vpcs()["Vpcs"]
    again = ec2.describe_vpcs()["Vpcs"]
    assert again == first
    assert len(served) == 1, f"moto answered {len(served)} reads of unchanged state"


def test_a_change_by_any_client_is_seen_by_the_next_read(aws: MotoBackend, served: list[str]) -> None:
    reader = aws.client("ec2")
    writer = aws_client("ec2", endpoint_url=aws.endpoint_url, region=aws.region)
    count = len(reader.describe_vpcs()["Vpcs"])
    vpc = writer.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    vpcs = [v["VpcId"] for v in reader.describe_vpcs()["Vpcs"]]
    assert vpc in vpcs and len(vpcs) == count + 1
    assert len(served) == 3  # read, write, read again


def test_different_requests_are_kept_apart(aws: MotoBackend) -> None:
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    everything = ec2.describe_vpcs()["Vpcs"]
    one = ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    assert [v["VpcId"] for v in one] == [vpc] and len(everything) > 1


def test_an_answer_changed_by_its_caller_is_not_what_the_next_read_gets(aws: MotoBackend) -> None:
    ec2 = aws.client("ec2")
    ec2.describe_vpcs()["Vpcs"].clear()
    assert ec2.describe_vpcs()["Vpcs"], "the cached answer was emptied by the first caller"


def test_only_an_emulator_this_process_serves_has_a_change_count() -> None:
    with MotoBackend() as backend:
        url = backend.endpoint_url
        changes = changes_at(url)
        assert changes is not None and changes() == backend._server._server.app.changes
    assert changes_at(url) is None, "a stopped emulator's endpoint still counted as served"
    assert changes_at(None) is None  # real AWS
