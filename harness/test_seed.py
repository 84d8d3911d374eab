"""The 2015 seed script (bench/seed) really runs in the lab, so bench/seed_vs_ours.py measures a working seed.

Its user data runs as it is (IMDSv1, real aws CLI and curl) against moto; only the region and the
route table ids are filled in, plus the one documented repair of its ENI lookup.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from natlab.cloud.backend import MotoBackend
from natlab.cloud.netns_available import namespaces_available, unavailable_reason
from natlab.lab.takeover import Scene, TakeoverLab, TakeoverRun
from natlab.module import seed_userdata

pytestmark = pytest.mark.skipif(not namespaces_available(), reason=unavailable_reason() or "")


@pytest.fixture(scope="module")
def takeover(moto_server: MotoBackend) -> Iterator[TakeoverLab]:
    moto_server.reset()  # the worker's one emulator: what earlier modules made goes
    with TakeoverLab(moto_server) as lab:
        yield lab


def run_seed(lab: TakeoverLab, tables: int, *, repaired: bool = True, imds_v1: bool = True) -> TakeoverRun:
    def seed(scene: Scene) -> str:
        return seed_userdata.render(scene.region, scene.route_table_ids, repair_eni_field=repaired)

    return lab.run(seed, script="seed", tables=tables, imds_v1=imds_v1)


CLI_CREDENTIAL_PATHS = ("/latest/api/token", "/latest/meta-data/iam/")


def test_seed_points_every_route_table_at_its_own_eni(takeover: TakeoverLab) -> None:
    run = run_seed(takeover, tables=2)
    assert (run.exit_code, run.tables_switched) == (0, 2), run.console
    assert run.switched_s is not None
    assert run.source_dest_check is False
    # IMDSv1: the seed's own token-less GET; everything after it is the aws CLI finding the role's
    # credentials in IMDS, as on EC2 (token, then iam/security-credentials/...).
    assert run.imds_requests[0] == "GET /latest/meta-data/instance-id 200"
    assert all(r.split()[1].startswith(CLI_CREDENTIAL_PATHS) for r in run.imds_requests[1:]), run.imds_requests
    assert run.api_calls == (
        "DescribeNetworkInterfaces",
        "ReplaceRoute",
        "ReplaceRoute",
        "ModifyNetworkInterfaceAttribute",
    )
    programs = [p.split(" ", 1)[0] for p in run.processes]
    assert (programs.count("curl"), programs.count("aws")) == (1, 4)


def test_seed_as_published_takes_a_mac_address_for_its_eni_id(takeover: TakeoverLab) -> None:
    # Its `cut -f5` picks the fifth text column, which held the ENI id in 2015 (bench/seed_vs_ours.md).
    run = run_seed(takeover, tables=1, repaired=False)
    assert run.tables_switched == 0
    assert run.source_dest_check is True
    assert "InvalidNetworkInterfaceID.NotFound" in run.console
    assert "The networkInterface ID '02:" in run.console, run.console


def test_seed_finds_no_instance_when_imds_requires_tokens(takeover: TakeoverLab) -> None:
    run = run_seed(takeover, tables=1, imds_v1=False)
    assert run.imds_requests[0] == "GET /latest/meta-data/instance-id 401"
    assert run.tables_switched == 0
