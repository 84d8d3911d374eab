"""The headline promise, end to end: a dead NAT is replaced and the zone's routes follow it within the SLA.

One lab (a Terraform apply of harness/fixtures/vpc_nat in one zone) serves the scenarios of this file in order;
the lab's own clean-up destroys it. The scenario that destroys a lab in the middle of a failover and checks
nothing is left runs in ``test_standby.py``'s lab (the same zone plus a standby), which carries less.
"""

from __future__ import annotations

import threading

import pytest

from natlab.cloud import moto_fixes, warm_pool
from natlab.cloud.asg_events import ABANDONED
from natlab.cloud.flows import stall_bound
from natlab.cloud.image import DnfModel
from natlab.cloud.warm_pool import PENDING
from natlab.lab import first_run, inbound, warm
from natlab.lab.failover import FAULTS, run_failover
from natlab.lab.failover_report import replacement_path
from natlab.lab.lab import Lab
from natlab.module import bootlog
from natlab.module.user_data_payload import strip_comments
from natlab.module.userdata import render
from natlab.waiting import wait_until

ZONE = "us-east-1a"
INSTALL_NFTABLES = "dnf install -y --setopt=install_weak_deps=False nftables"
#: The scenarios share one lab, in order, on one xdist worker (and start first: ``--dist loadgroup``).
pytestmark = pytest.mark.xdist_group("one_zone_lab")


def test_first_nat_serves_the_zone_from_the_first_apply(one_zone_lab: Lab):
    nat = one_zone_lab.current_nat(ZONE)
    eni = one_zone_lab.primary_eni(nat)
    assert set(one_zone_lab.route_targets(ZONE).values()) == {eni}
    box = one_zone_lab.sandbox(nat)
    assert box is not None, "no sandbox booted"
    # The zone is served once the launch completes; the script's last step (facts) may still be running.
    assert box.wait(timeout=one_zone_lab.settings.sla) == 0, box.describe()
    etc = box.etc_changes()
    assert "net.ipv4.ip_forward = 1" in (etc.get("sysctl.d/90-nat-instance.conf") or ""), etc
    assert "masquerade" in (etc.get("nftables/nat-instance.nft") or ""), etc
    assert "systemctl enable nftables" in box.shim_calls()
    dnf_calls = [call for call in box.shim_calls() if call.startswith("dnf ")]
    assert dnf_calls == ([INSTALL_NFTABLES] if one_zone_lab.settings.image == "al2023" else []), dnf_calls
    # every API call went through curl (aws_query): the recording `aws` shim never ran
    assert [call for call in box.shim_calls() if call.startswith("aws ")] == [], box.describe()
    assert any("/iam/security-credentials/" in r.path for r in box.imds_requests), "role credentials never read"
    assert any(r.path.endswith("/api/token") for r in box.imds_requests), "IMDSv2 token was never requested"


def test_first_run_summary_records_what_only_a_real_account_can_answer(one_zone_lab: Lab):
    # On --backend aws this same scenario writes the real account's page (README, first run).
    run = first_run.collect(one_zone_lab, ZONE)
    page = first_run.write(run, one_zone_lab.settings.report_dir)
    assert run.missing_facts == [], page.read_text()
    assert [step.name for step in run.steps][-2:] == ["lifecycle", "facts"], page.read_text()
    assert run.alarm is not None and run.alarm["StateValue"], "the status-check alarm was not created"


def test_nothing_gets_in_through_the_serving_nat(one_zone_lab: Lab, record_fault):
    if one_zone_lab.vpc is None:
        pytest.skip(f"data plane unavailable: {one_zone_lab.dataplane_skip_reason}")
    probe = inbound.probe_nat(one_zone_lab, ZONE)
    print(probe.summary())  # the ports tried and what each saw, for the closing note
    assert probe.egress_address == probe.public_ip, f"the path under test must be live:\n{probe.summary()}"
    assert probe.reached_workload == {}, probe.summary()
    assert set(probe.from_internet_tcp.values()) | set(probe.from_internet_udp.values()) == {"no answer"}, (
        f"the module's group lets nothing in from the internet:\n{probe.summary()}"
    )
    assert set(probe.from_workload_tcp.values()) == {"refused"}, f"nothing listens on the NAT:\n{probe.summary()}"
    assert probe.from_workload_imds == {80: "no answer"}, f"the NAT's IMDS is its own:\n{probe.summary()}"
    assert probe.exposed() == [] and probe.nat_listening, f"only the lab's artifacts listen:\n{probe.summary()}"
    record_fault(
        f"inbound TCP {list(inbound.SCAN_TCP_PORTS)} and UDP {list(inbound.SCAN_UDP_PORTS)} from the internet to the "
        "serving NAT's Elastic IP; TCP to its private IP and 169.254.169.254 from the private subnet",
        "nothing reached a private host; the NAT answers no port (only the lab's IMDS and relay listen, on "
        "169.254.169.254 and 127.0.0.1)",
        detail=" ".join(probe.summary().split()),
    )


def test_instance_ran_the_user_data_terraform_rendered_byte_for_byte(one_zone_lab: Lab):
    lab = one_zone_lab
    zone = lab.zones[ZONE]
    box = lab.sandbox(lab.current_nat(ZONE))
    assert box is not None
    expected = render(
        zone=ZONE,
        asg_name=zone.asg_name,
        route_table_ids=zone.route_table_ids,
        served_cidrs=["10.0.0.0/16"],
        eip_allocation_id=zone.eip_allocation_id,
        lifecycle_hook_name=lab.outputs["lifecycle_hook_name"],
    )
    assert box.original_user_data.decode() == strip_comments(expected)


@pytest.mark.parametrize("fault", FAULTS)
def test_route_moves_to_replacement_when_nat_fails(one_zone_lab: Lab, record_failover, fault: str):
    result = run_failover(one_zone_lab, ZONE, fault)
    record_failover(one_zone_lab, result, f"{fault}-nat-1-zone")
    assert result.problems == [], result.summary()
    assert result.new_eni != result.old_eni
    assert result.seconds is not None and result.seconds <= result.sla, result.summary()


def test_packets_flow_before_stop_during_and_flow_after_failover(one_zone_lab: Lab, record_failover):
    if one_zone_lab.vpc is None:
        pytest.skip(f"data plane unavailable: {one_zone_lab.dataplane_skip_reason}")
    before = one_zone_lab.vpc.whoami(one_zone_lab.zones[ZONE].private_subnet_id)
    result = run_failover(one_zone_lab, ZONE, "terminate")
    record_failover(one_zone_lab, result, "terminate-nat-1-zone-dataplane")
    assert result.problems == [], result.summary()
    assert before, "egress did not work before the failover"
    assert result.datagrams_lost and result.datagrams_lost > 0, "no outage seen: was traffic really through the NAT?"
    assert result.outage_seconds is not None and result.outage_seconds <= result.seconds + 1.0, result.summary()
    assert result.egress_address_after is not None
    # The new NAT has no state for an established flow. If the client's retransmission reaches it first,
    # it picks the flow up (nf_conntrack_tcp_loose) and masquerades it keeping the port: with the Elastic
    # IP moved along, the server sees the same address and port and the flow survives. If the server's
    # retransmission arrives first, the new NAT's own stack answers it with a reset. Either way the flow
    # must not be left hanging.
    assert one_zone_lab.zones[ZONE].eip_allocation_id, "this scenario expects the one-zone lab's Elastic IP"
    assert result.tcp_outcome in ("survived", "reset"), result.summary()


#: Flows held through the many-flows failover: a line each every FLOW_INTERVAL s, from one thread.
FLOWS = 300
FLOW_INTERVAL = 0.5


def test_hundreds_of_flows_through_a_failover_each_survive_or_are_reset_none_hangs(one_zone_lab: Lab, record_fault):
    lab = one_zone_lab
    if lab.vpc is None:
        pytest.skip(f"data plane unavailable: {lab.dataplane_skip_reason}")
    subnet = lab.zones[ZONE].private_subnet_id
    with lab.vpc.many_flows(subnet, count=FLOWS, interval=FLOW_INTERVAL) as flows:
        flows.wait_all_echoed()
        result = run_failover(lab, ZONE, "terminate")  # with its own UDP stream and held connection
        assert result.problems == [] and result.route_switched_at is not None, result.summary()
        # Each flow keeps sending: its retransmission meets the new NAT within the bound (flows.py).
        stall = stall_bound(result.fault_at, result.route_switched_at)
        counts = flows.settle(result.route_switched_at, stall)
    record_fault(
        f"terminate the NAT of {ZONE} under {FLOWS} TCP flows (a line each every {FLOW_INTERVAL} s) "
        "and a UDP stream (100/s)",
        f"{counts.text()}; UDP lost {result.datagrams_lost}",
        result.seconds,
        f"hung = no echo and no error {stall:.1f} s after the route moved; data-plane outage "
        f"{result.outage_seconds:.2f} s",
        counts.as_dict() | {"udp lost": result.datagrams_lost or 0},
    )
    assert counts.hung == 0 and counts.error == 0, counts.text()
    assert counts.survived + counts.reset + counts.closed == FLOWS, counts.text()
    assert result.datagrams_lost, "no datagram lost: was the UDP stream really through the NAT?"


# --- warm pool (issue 9): a replacement is a prepared, stopped instance, started again -------------


def boot_modes(lab: Lab, instance_id: str) -> list[str]:
    """The boot script's runs on this instance: "first-boot" (user data), then "start" (its unit)."""
    box = lab.sandbox(instance_id)
    assert box is not None, f"{instance_id} never booted"
    return [line.message.split()[-1] for line in box.log_lines() if line.message.startswith("boot mode ")]


def replacing(old: str, new: str):
    """A user-data transform that replaces one line of the real boot script (and fails if it is gone)."""

    def transform(user_data: bytes) -> bytes:
        text = user_data.decode()
        assert old in text, f"the boot script no longer has {old.strip()!r}: update this scenario"
        return text.replace(old, new).encode()

    return transform


def assert_waits_in_the_pool_without_touching_the_zone(lab: Lab, instance_id: str, routes_before: dict) -> None:
    box = lab.sandbox(instance_id)
    assert box is not None
    # Stopped: the fleet ends its sandbox at its next look (every 0.2 s).
    wait_until(lambda: box.terminated, what=f"the stop of {instance_id}", timeout=5, interval=0.05)
    assert lab.route_targets(ZONE) == routes_before
    steps = [step.name for step in bootlog.steps(box.log_lines())]
    assert "routes" not in steps and "elastic-ip" not in steps and "source-dest-check" not in steps, steps
    assert "prepared, waiting in the warm pool (Warmed:Stopped)" in box.boot_log(), box.describe()
    eni = lab.primary_eni(instance_id)
    assert lab.ec2.describe_network_interfaces(NetworkInterfaceIds=[eni])["NetworkInterfaces"][0]["SourceDestCheck"]
    # A start here without the group's asking was the fleet restarting the instance on a state it
    # had read before the stop (test_fleet_polls.py); the group's events tell the two apart.
    events = lab.controller.events[-12:] if lab.controller is not None else []
    assert boot_modes(lab, instance_id) == ["first-boot"], f"the group's last events: {events}"
    etc = box.etc_changes()
    assert "ExecStart=/usr/local/sbin/nat-instance start" in (etc.get("systemd/system/nat-instance.service") or "")
    wants = box.upper("/etc") / "systemd/system/multi-user.target.wants/nat-instance.service"
    assert wants.is_symlink(), "systemctl enable left no wants link"


@pytest.mark.parametrize("fault", FAULTS)
def test_route_moves_to_a_warm_instance_started_from_the_pool(one_zone_lab: Lab, record_failover, fault: str):
    lab = one_zone_lab
    routes_before = lab.route_targets(ZONE)
    with warm.warm_pool(lab, ZONE):
        prepared = warm.wait_for_member(lab, ZONE)
        assert_waits_in_the_pool_without_touching_the_zone(lab, prepared, routes_before)
        result = run_failover(lab, ZONE, fault)
        record_failover(lab, result, f"{fault}-nat-1-zone-warm-pool")
        assert result.problems == [], result.summary()
        assert result.new_instance == prepared, result.summary()
        box = lab.sandbox(prepared)
        assert box is not None and box.started_again, "the warm instance was not started from its disk"
        assert replacement_path(lab, result) == "warm-pool", "the report must project the warm-pool path"
        # No user data ran at this start: the unit its first boot enabled did.
        assert boot_modes(lab, prepared) == ["first-boot", "start"], box.boot_log()
        assert warm.wait_for_member(lab, ZONE, besides={prepared}), "the pool was not refilled"


def test_a_warm_replacement_serves_even_when_dnf_fails_at_failover_time(one_zone_lab: Lab):
    lab = one_zone_lab
    if lab.settings.image != "al2023":
        pytest.skip(f"--image {lab.settings.image} has nftables: no boot runs dnf")
    with warm.warm_pool(lab, ZONE):
        prepared = warm.wait_for_member(lab, ZONE)  # nftables installed while it was prepared
        # The same fault abandons a cold launch (test_a_replacement_whose_dnf_never_works_...).
        with lab.dnf_on_next_boot(DnfModel("fail")):
            result = run_failover(lab, ZONE, "terminate", measure_outage=False)
        assert result.problems == [], result.summary()
        assert result.new_instance == prepared and lab.dnf_faulted[-1] == prepared, result.summary()
        box = lab.sandbox(prepared)
        assert box is not None and box.started_again
        start = box.boot_log().split("boot mode start", 1)[1]
        assert "step=install" not in start and "step=routes done" in start, box.describe()


def test_a_start_that_reads_a_warm_state_reads_again_until_in_service(one_zone_lab: Lab, monkeypatch):
    lab = one_zone_lab
    take = warm_pool.WARM.take

    def lagging_take(group: str) -> str | None:
        """Auto Scaling takes the instance, but IMDS still says Warmed:Stopped when it starts."""
        instance_id = take(group)
        if instance_id is not None:
            warm_pool.WARM.set_target_state(instance_id, "Warmed:Stopped")
        return instance_id

    def imds_catches_up(instance_id: str) -> None:
        box = lab.fleet.wait_for(lambda fleet: _started_again(fleet.get(instance_id)), timeout=lab.settings.sla)
        wait_until(lambda: "reading it again" in box.boot_log(), what="a second read", timeout=lab.settings.sla)
        assert box.imds is not None
        box.imds.set_target_lifecycle_state("InService")

    with warm.warm_pool(lab, ZONE):
        prepared = warm.wait_for_member(lab, ZONE)
        monkeypatch.setattr(warm_pool.WARM, "take", lagging_take)
        catching_up = threading.Thread(target=imds_catches_up, args=(prepared,), daemon=True)
        catching_up.start()
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
        catching_up.join(timeout=5)
        assert result.problems == [] and result.new_instance == prepared, result.summary()
        start = lab.sandbox(prepared).boot_log().split("boot mode start", 1)[1]
        assert "step=in-service target lifecycle state Warmed:Stopped at a start" in start, start
        assert "step=routes done" in start, start


def _started_again(box):
    return box if box is not None and box.started_again else None


def test_a_warm_instance_that_fails_preparation_is_abandoned_and_replaced_in_the_pool(one_zone_lab: Lab):
    lab = one_zone_lab
    routes_before = lab.route_targets(ZONE)
    assert lab.fleet is not None
    with warm.warm_pool(lab, ZONE):
        with lab.sabotaged(replacing("  step persist persist_for_restarts\n", "  step persist false\n")):
            broken = warm.wait_for_member(lab, ZONE, PENDING)
            lab.fleet.wait_booted(broken, timeout=lab.settings.sla)
        prepared = warm.wait_for_member(lab, ZONE, besides={broken})
        assert lab.ran_sabotaged_user_data(broken) and not lab.ran_sabotaged_user_data(prepared)
        results = [a.result for a in moto_fixes.LIFECYCLE.actions(broken)]
        assert results == ["ABANDON"], results
        assert broken not in warm.pool_members(lab, ZONE)
        state = lab.ec2.describe_instances(InstanceIds=[broken])["Reservations"][0]["Instances"][0]["State"]["Name"]
        assert state in ("shutting-down", "terminated")
        steps = [step.name for step in bootlog.steps(lab.sandbox(broken).log_lines())]
        assert "routes" not in steps and steps[-1] == "persist", steps
        assert lab.route_targets(ZONE) == routes_before
        assert_waits_in_the_pool_without_touching_the_zone(lab, prepared, routes_before)


def test_replacement_is_a_cold_launch_when_no_warm_instance_is_ready(one_zone_lab: Lab, record_failover):
    lab = one_zone_lab
    routes_before = lab.route_targets(ZONE)
    assert lab.fleet is not None
    with warm.warm_pool(lab, ZONE):
        # The pool's one instance never gets ready: its preparation hangs before the hook is completed.
        hang = "  sleep 600\n  step target-state read_target_state\n"
        with lab.sabotaged(replacing("  step target-state read_target_state\n", hang)):
            preparing = warm.wait_for_member(lab, ZONE, PENDING)
            lab.fleet.wait_booted(preparing, timeout=lab.settings.sla)
        assert lab.route_targets(ZONE) == routes_before
        result = run_failover(lab, ZONE, "terminate")
        record_failover(lab, result, "terminate-nat-1-zone-empty-warm-pool")
        assert result.problems == [], result.summary()
        assert result.new_instance not in (None, preparing), result.summary()
        assert boot_modes(lab, result.new_instance) == ["first-boot"]
        assert warm.pool_members(lab, ZONE) == {preparing: PENDING}
        steps = [step.name for step in bootlog.steps(lab.sandbox(preparing).log_lines())]
        assert "routes" not in steps, steps
        assert set(lab.route_targets(ZONE).values()) == {lab.primary_eni(result.new_instance)}


BROKEN_STEPS = {
    "skips-routes": "  step routes point_routes\n",
    "keeps-source-dest-check": "  step source-dest-check disable_source_dest_check\n",
    "forgets-masquerade": "  step masquerade configure_masquerade\n",
}


def without_step(line: str):
    """A user-data transform that deletes one step of the real boot script (and fails if it is gone)."""

    def transform(user_data: bytes) -> bytes:
        text = user_data.decode()
        assert line in text, f"the boot script no longer has {line.strip()!r}: update BROKEN_STEPS"
        return text.replace(line, "").encode()

    return transform


@pytest.mark.parametrize("broken", BROKEN_STEPS)
def test_failover_check_fails_for_a_broken_boot_script(one_zone_lab: Lab, record_fault, broken: str):
    lab = one_zone_lab
    if broken == "forgets-masquerade" and lab.vpc is None:
        pytest.skip(f"only real packets can tell a missing masquerade: {lab.dataplane_skip_reason}")
    # No traffic through the fault: the NAT it replaces may be the previous check's broken one.
    with lab.sabotaged(without_step(BROKEN_STEPS[broken])):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    expected = {
        "skips-routes": ["still target"],
        # The control plane sees the flag; real packets are dropped by the emulated VPC as EC2 would.
        "keeps-source-dest-check": ["source/dest check is still on"] + (["egress from"] if lab.vpc else []),
        "forgets-masquerade": ["egress from"],
    }[broken]
    for problem in expected:
        assert any(problem in found for found in result.problems), f"{problem!r} not reported:\n{result.summary()}"
    assert result.new_instance and lab.ran_sabotaged_user_data(result.new_instance), result.summary()
    record_fault(f"boot script {broken}", f"the failover check reports it: {'; '.join(expected)}")


def test_a_replacement_whose_dnf_never_works_is_abandoned_before_any_route_moves(one_zone_lab: Lab):
    lab = one_zone_lab
    if lab.settings.image != "al2023":
        pytest.skip(f"--image {lab.settings.image} has nftables: the boot runs no dnf")
    with lab.dnf_on_next_boot(DnfModel("fail")):
        result = run_failover(lab, ZONE, "terminate", measure_outage=False)
    assert result.problems == [], result.summary()
    failed = lab.dnf_faulted[-1]
    assert failed != result.new_instance, "Auto Scaling's next try serves the zone"
    box = lab.sandbox(failed)
    assert box is not None and box.exit_code not in (0, None)
    steps = box.step_times()
    assert steps["install"].status == "error", box.describe()
    assert steps["install"].notes[-1] == "giving up: nftables could not be installed", box.describe()
    assert "routes" not in steps, box.describe()
    # The group terminates it right after the ABANDON: the script's own "launch abandoned" line may not
    # get written (as on AWS), so the group's side tells: its controller's events of the whole lab (the
    # failover's own timeline may end first: it ends when the next try serves).
    assert lab.controller is not None, "the lab's health controller reports the ABANDON"
    controller = lab.controller
    wait_until(
        lambda: any(kind == ABANDONED and instance == failed for kind, instance, _ in controller.events) or None,
        what=f"the group to act on {failed}'s ABANDON",
        timeout=30,
    )
    assert failed not in lab.group_instances(ZONE), "the abandoned instance left the group"


def test_second_plan_is_empty_after_failover(one_zone_lab: Lab):
    assert one_zone_lab.terraform.has_changes() is False, one_zone_lab.terraform.transcript(last=1)
