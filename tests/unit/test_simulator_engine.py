"""The simulator's state machine, seed validation and list paging, without HTTP.

Time moves only through a ``ManualClock``; nothing here sleeps. The HTTP behaviour (auth, faults, the
request log, both adapters) is covered in ``tests/integration/test_simulator.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from azswitch.dev.simulator import (
    DEMO_SEED,
    ManualClock,
    SeedError,
    SimClock,
    Simulator,
    load_seed,
    parse_seed,
)
from azswitch.dev.simulator.core import ControlError
from azswitch.dev.simulator.engine import ApiError
from azswitch.dev.simulator.faults import FaultError, parse_faults

PROJECT = "0123456789abcdef0123456789abcdef"
GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
SPARE = "spare-pair"
REVERSE = "os-reverse-replication-consistency-group"
FAILOVER = "os-failover-replication-consistency-group"
SYNC = "os-sync-replication-consistency-group"
STOP = "os-stop-replication-consistency-group"
REPROTECT = "os-reprotect-replication-consistency-group"
EXTEND = "os-extend-replication-volumes"
TIMINGS = {
    "switchoverSeconds": 5,
    "copyingSeconds": 3,
    "failoverSeconds": 4,
    "reprotectSeconds": 6,
    "syncSeconds": 2,
    "createSeconds": 1,
    "updateSeconds": 1,
    "deleteSeconds": 1,
}


def make_sim(**group: Any) -> tuple[Simulator, ManualClock]:
    clock = ManualClock()
    seed = {
        "groups": [
            {
                "projectID": PROJECT,
                "id": GROUP,
                "name": "orders",
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
                **group,
            }
        ],
        "pairs": [
            {
                "projectID": PROJECT,
                "id": SPARE,
                "availabilityZones": ["az1.dc1", "az2.dc2"],
                "primaryAZ": "az1.dc1",
            }
        ],
        "timings": TIMINGS,
    }
    return Simulator(seed, clock=clock), clock


def state(sim: Simulator, group_id: str = GROUP) -> tuple[str, str, str]:
    view = sim.engine.show_group(PROJECT, group_id)
    return view["status"], view["priority_station"], view["replication_status"]


def act(sim: Simulator, key: str, value: Any = None) -> None:
    sim.engine.action(PROJECT, GROUP, key, value)


# ------------------------------------------------------------------------------ status machine

AZ1, AZ2 = "az1.dc1", "az2.dc2"
FAILOVERED = {"status": "failovered", "replicationStatus": "active-stopped", "primaryAZ": AZ2}


@pytest.mark.parametrize(
    ("seed", "key", "timeline"),
    [
        pytest.param(
            {},
            REVERSE,
            [
                (0, ("reversing", AZ1, "active")),
                (4.999, ("reversing", AZ1, "active")),
                (0.001, ("available", AZ2, "copying")),
                (2.999, ("available", AZ2, "copying")),
                (0.001, ("available", AZ2, "active")),
            ],
            id="switchover-reversing-then-flipped-copying-then-active",
        ),
        pytest.param(
            {},
            FAILOVER,
            [(0, ("failovering", AZ1, "active")), (4, ("failovered", AZ2, "active-stopped"))],
            id="failover",
        ),
        pytest.param(
            FAILOVERED,
            REPROTECT,
            [
                (0, ("failovered", AZ2, "copying")),
                (6, ("available", AZ2, "copying")),
                (3, ("available", AZ2, "active")),
            ],
            id="reprotect",
        ),
        pytest.param(
            {"replicationStatus": "active-stopped"},
            SYNC,
            [(0, ("available", AZ1, "copying")), (2, ("available", AZ1, "active"))],
            id="sync",
        ),
        pytest.param(
            {},
            STOP,
            [(0, ("available", AZ1, "active-stopped")), (100, ("available", AZ1, "active-stopped"))],
            id="stop",
        ),
    ],
)
def test_actions_move_through_their_phases(
    seed: dict[str, Any], key: str, timeline: list[tuple[float, tuple[str, str, str]]]
) -> None:
    sim, clock = make_sim(**seed)
    act(sim, key)
    for step, expected in timeline:
        clock.advance(step)
        assert state(sim) == expected, f"after +{step}s"


def test_a_switchover_records_updated_at_at_each_phase_and_leaves_no_operation() -> None:
    sim, clock = make_sim()
    assert sim.engine.show_group(PROJECT, GROUP)["updated_at"] is None
    act(sim, REVERSE)
    first = sim.engine.show_group(PROJECT, GROUP)["updated_at"]
    clock.advance(60)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert view["updated_at"] > first
    assert "Z" not in view["updated_at"] and "+" not in view["updated_at"]
    assert sim.group(GROUP)["operation"] is None


def test_stop_cancels_the_pending_copying_to_active_step() -> None:
    sim, clock = make_sim()
    act(sim, REVERSE)
    clock.advance(5)
    act(sim, STOP)
    clock.advance(10)
    assert state(sim) == ("available", AZ2, "active-stopped")


@pytest.mark.parametrize(
    ("seed", "key", "value", "error"),
    [
        pytest.param({}, REVERSE, None, None, id="reverse-healthy"),
        pytest.param({}, REVERSE, {}, None, id="reverse-empty-object-accepted"),
        pytest.param({"status": "error_reversing"}, REVERSE, None, None, id="reverse-retry-after-error"),
        pytest.param({"status": "reversing"}, REVERSE, None, "requires status", id="reverse-while-reversing"),
        pytest.param(FAILOVERED, REVERSE, None, "requires status", id="reverse-after-failover"),
        pytest.param(
            {"replicationStatus": "active-stopped"},
            REVERSE,
            None,
            "replication_status active",
            id="reverse-paused",
        ),
        pytest.param(
            {"replicationStatus": "copying"}, REVERSE, None, "replication_status", id="reverse-copying"
        ),
        pytest.param({"faultLevel": "2"}, REVERSE, None, "fault_level 0", id="reverse-fault-2"),
        pytest.param({}, REVERSE, {"x": 1}, "takes no parameters", id="reverse-with-parameters"),
        pytest.param({"faultLevel": "2"}, FAILOVER, None, None, id="failover-fault-2"),
        pytest.param({"faultLevel": "5"}, FAILOVER, None, "fault_level 5", id="failover-fault-5"),
        pytest.param({"status": "error_failovering"}, FAILOVER, None, None, id="failover-retry"),
        pytest.param(FAILOVERED, FAILOVER, None, "requires status", id="failover-twice"),
        pytest.param(FAILOVERED, REPROTECT, None, None, id="reprotect-after-failover"),
        pytest.param({}, REPROTECT, None, "requires status failovered", id="reprotect-available"),
        pytest.param(
            {"status": "error"}, REPROTECT, None, "requires status failovered", id="reprotect-plain-error"
        ),
        pytest.param(FAILOVERED, SYNC, None, "requires status available", id="sync-failovered"),
        pytest.param({"status": "reversing"}, STOP, None, "requires status available", id="stop-reversing"),
        pytest.param(
            {}, EXTEND, {"replications": [{"id": "p", "new_size": 20}]}, "not in group", id="extend-bad-pair"
        ),
        pytest.param({}, EXTEND, None, "replications", id="extend-without-body"),
        pytest.param(
            {"replicationStatus": "error"}, EXTEND, {"replications": []}, "other than error", id="extend-err"
        ),
    ],
)
def test_action_preconditions(seed: dict[str, Any], key: str, value: Any, error: str | None) -> None:
    sim, _ = make_sim(**seed)
    if error is None:
        act(sim, key, value)
        return
    with pytest.raises(ApiError) as caught:
        act(sim, key, value)
    assert caught.value.status == 400
    assert error in caught.value.message


def test_extend_grows_the_pair_and_both_disks_at_once() -> None:
    sim, _ = make_sim(pairs=[{"id": "p1", "sizeGB": 10}])
    act(sim, EXTEND, {"replications": [{"id": "p1", "new_size": 20}]})
    pair = sim.engine.show_pair(PROJECT, "p1")
    assert '"volume_size":20' in pair["record_metadata"]
    for volume_id in pair["volume_ids"].split(","):
        assert sim.engine.show_volume(PROJECT, volume_id)["size"] == 20
    with pytest.raises(ApiError, match="must exceed"):
        act(sim, EXTEND, {"replications": [{"id": "p1", "new_size": 20}]})


def test_unknown_group_is_404() -> None:
    sim, _ = make_sim()
    with pytest.raises(ApiError) as caught:
        sim.engine.action(PROJECT, "nope", REVERSE, None)
    assert caught.value.status == 404
    with pytest.raises(ApiError):
        sim.engine.show_group("other-project", GROUP)


# ------------------------------------------------------------------------------ injected failures


@pytest.mark.parametrize(
    ("seed", "action", "key", "advance", "expected_status", "expected_primary"),
    [
        pytest.param({}, "reverse", REVERSE, 5, "error_reversing", AZ1, id="reverse"),
        pytest.param({}, "failover", FAILOVER, 4, "error_failovering", AZ1, id="failover"),
        pytest.param(FAILOVERED, "reprotect", REPROTECT, 6, "error", AZ2, id="reprotect"),
    ],
)
def test_fail_next_accepts_then_fails_and_a_retry_succeeds(
    seed: dict[str, Any], action: str, key: str, advance: float, expected_status: str, expected_primary: str
) -> None:
    sim, clock = make_sim(**seed)
    sim.fail_next(GROUP, action, "37100017")
    act(sim, key)
    assert sim.group(GROUP)["operation"]["willFail"] == "37100017"
    clock.advance(advance)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["status"], view["priority_station"], view["failure_detail"]) == (
        expected_status,
        expected_primary,
        "37100017",
    )
    act(sim, key)  # the failure is consumed: the retry works
    clock.advance(100)
    assert sim.engine.show_group(PROJECT, GROUP)["failure_detail"] == ""


def test_fail_next_rejects_unknown_actions() -> None:
    sim, _ = make_sim()
    with pytest.raises(ControlError) as caught:
        sim.fail_next(GROUP, "delete")
    assert caught.value.status == 400


# ------------------------------------------------------------------------------ AZ outages


def test_outage_of_the_primary_then_failover_reprotect_and_switch_back() -> None:
    sim, clock = make_sim()
    assert sim.az_outage(AZ1, "2") == [GROUP]
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["fault_level"], view["replication_status"]) == ("2", "error")
    with pytest.raises(ApiError, match="requires replication_status active"):
        act(sim, REVERSE)

    act(sim, FAILOVER)
    clock.advance(4)
    view = sim.engine.show_group(PROJECT, GROUP)
    # fault_level stays while the old primary AZ is down: that is how a client knows a reprotect would fail.
    assert (view["status"], view["priority_station"], view["fault_level"]) == ("failovered", AZ2, "2")

    act(sim, REPROTECT)  # the old AZ is still down: accepted, then it fails
    clock.advance(6)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["status"], view["replication_status"], view["failure_detail"]) == (
        "error",
        "error",
        "37100043",
    )

    sim.az_recover(AZ1)
    assert state(sim) == ("error", AZ2, "error")  # a failed-over group waits for a reprotect
    assert sim.engine.show_group(PROJECT, GROUP)["fault_level"] == "0"
    act(sim, REPROTECT)
    clock.advance(9)
    assert state(sim) == ("available", AZ2, "active")
    act(sim, REVERSE)
    clock.advance(8)
    assert state(sim) == ("available", AZ1, "active")


@pytest.mark.parametrize(
    ("az", "level", "replication", "fault"),
    [
        pytest.param(AZ1, "2", "error", "2", id="primary-level-2"),
        pytest.param(AZ1, "5", "inactive", "5", id="primary-level-5"),
        pytest.param(AZ2, "2", "inactive", "0", id="secondary"),
    ],
)
def test_outage_effects_and_recovery_resync(az: str, level: str, replication: str, fault: str) -> None:
    sim, clock = make_sim()
    sim.az_outage(az, level)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["replication_status"], view["fault_level"]) == (replication, fault)
    sim.az_recover(az)
    assert state(sim) == ("available", AZ1, "copying")
    clock.advance(3)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["replication_status"], view["fault_level"]) == ("active", "0")


def test_failover_is_refused_at_fault_level_5() -> None:
    sim, _ = make_sim()
    sim.az_outage(AZ1, "5")
    with pytest.raises(ApiError, match="fault_level 5"):
        act(sim, FAILOVER)


def test_outage_during_a_switchover_makes_it_fail_when_it_would_have_finished() -> None:
    sim, clock = make_sim()
    act(sim, REVERSE)
    clock.advance(2)
    sim.az_outage(AZ2, "2")
    assert state(sim)[0] == "reversing"
    clock.advance(3)
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["status"], view["priority_station"], view["failure_detail"]) == (
        "error_reversing",
        AZ1,
        "37100043",
    )


def test_paused_groups_are_untouched_by_outages_and_recovering_a_healthy_az_is_404() -> None:
    sim, _ = make_sim(replicationStatus="active-stopped")
    sim.az_outage(AZ2, "2")
    assert state(sim) == ("available", AZ1, "active-stopped")
    sim.az_recover(AZ2)
    assert state(sim) == ("available", AZ1, "active-stopped")
    with pytest.raises(ControlError) as caught:
        sim.az_recover(AZ2)
    assert caught.value.status == 404
    with pytest.raises(ControlError):
        sim.az_outage(AZ2, "3")


# ------------------------------------------------------------------------------ control helpers


def test_set_primary_is_instant_and_refused_while_reversing() -> None:
    sim, _ = make_sim()
    assert sim.set_primary(GROUP, AZ2)["primaryAZ"] == AZ2
    assert state(sim) == ("available", AZ2, "active")
    with pytest.raises(ControlError) as caught:
        sim.set_primary(GROUP, "az9.dc9")
    assert caught.value.status == 400
    act(sim, REVERSE)
    with pytest.raises(ControlError) as caught:
        sim.set_primary(GROUP, AZ1)
    assert caught.value.status == 409


def test_internal_view_shows_the_operation_and_volumes() -> None:
    sim, clock = make_sim(pairs=2)
    act(sim, REVERSE)
    clock.advance(1)
    view = sim.group(GROUP)
    assert view["operation"]["action"] == "reverse"
    assert view["operation"]["targetAZ"] == AZ2
    assert [p["phase"] for p in view["operation"]["pendingPhases"]] == ["reversed", "synced"]
    assert view["operation"]["pendingPhases"][0]["dueInSeconds"] == pytest.approx(4)
    assert sorted(v["role"] for v in view["volumes"]) == ["dr", "dr", "production", "production"]


def test_patch_group_forces_fields_and_validates_them() -> None:
    sim, _ = make_sim()
    sim.patch_group(GROUP, status="error_reversing", replicationStatus="inactive", failureDetail="37000216")
    view = sim.engine.show_group(PROJECT, GROUP)
    assert (view["status"], view["replication_status"], view["failure_detail"]) == (
        "error_reversing",
        "inactive",
        "37000216",
    )
    for bad in ({"status": "weird"}, {"primaryAZ": AZ2}, {"faultLevel": "3"}):
        with pytest.raises(ControlError):
            sim.patch_group(GROUP, **bad)


# ------------------------------------------------------------------------------ create/update/delete


def test_group_lifecycle_create_update_delete() -> None:
    sim, clock = make_sim()
    body = {
        "replication_consistency_group": {
            "name": "new",
            "replication_ids": [SPARE],
            "priority_station": AZ1,
            "replication_model": "hypermetro",
        }
    }
    created = sim.engine.create_group(PROJECT, body)
    assert set(created) == {
        "id",
        "name",
        "description",
        "status",
        "priority_station",
        "created_at",
        "updated_at",
    }
    assert (created["status"], created["updated_at"]) == ("creating", None)
    new_id = created["id"]
    clock.advance(1)
    assert state(sim, new_id) == ("available", AZ1, "active")
    assert sim.engine.show_pair(PROJECT, SPARE)["replication_consistency_group_id"] == new_id

    remove = {"replication_consistency_group": {"remove_replication_ids": [SPARE]}}
    with pytest.raises(ApiError, match="stop the group first"):
        sim.engine.update_group(PROJECT, new_id, remove)
    sim.engine.action(PROJECT, new_id, STOP, None)
    with pytest.raises(ApiError, match="remove every replication pair"):
        sim.engine.delete_group(PROJECT, new_id)
    assert sim.engine.update_group(PROJECT, new_id, remove)["status"] == "updating"
    clock.advance(1)
    assert sim.engine.show_group(PROJECT, new_id)["replication_ids"] == []
    assert sim.engine.show_pair(PROJECT, SPARE)["replication_consistency_group_id"] is None

    sim.engine.delete_group(PROJECT, new_id)
    assert state(sim, new_id)[0] == "deleting"
    clock.advance(1)
    with pytest.raises(ApiError) as caught:
        sim.engine.show_group(PROJECT, new_id)
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param(
            {"replication_ids": [SPARE], "priority_station": AZ1}, "replication_model", id="no-model"
        ),
        pytest.param(
            {"replication_ids": [SPARE], "priority_station": AZ2, "replication_model": "hypermetro"},
            "differs from the production AZ",
            id="wrong-station",
        ),
        pytest.param(
            {"replication_ids": ["ghost"], "priority_station": AZ1, "replication_model": "hypermetro"},
            "could not be found",
            id="unknown-pair",
        ),
        pytest.param(
            {"replication_ids": [], "priority_station": AZ1, "replication_model": "hypermetro"},
            "at least one",
            id="no-pairs",
        ),
        pytest.param(
            {"replication_ids": [SPARE], "priority_station": AZ1, "replication_model": "hypermetro", "x": 1},
            "unknown field",
            id="unknown-field",
        ),
        pytest.param(
            {"replication_ids": [SPARE], "replication_model": "hypermetro"}, "priority_station", id="no-az"
        ),
    ],
)
def test_create_validation(spec: dict[str, Any], error: str) -> None:
    sim, _ = make_sim()
    with pytest.raises(ApiError, match=error) as caught:
        sim.engine.create_group(PROJECT, {"replication_consistency_group": spec})
    assert caught.value.status == 400


def test_create_refuses_a_pair_that_is_already_grouped() -> None:
    sim, _ = make_sim(pairs=[{"id": "taken"}])
    spec = {"replication_ids": ["taken"], "priority_station": AZ1, "replication_model": "hypermetro"}
    with pytest.raises(ApiError, match="already belongs"):
        sim.engine.create_group(PROJECT, {"replication_consistency_group": spec})


# ------------------------------------------------------------------------------ listing


def listing_sim() -> Simulator:
    groups: list[dict[str, Any]] = [
        {
            "projectID": PROJECT,
            "id": f"g{i}",
            "name": name,
            "availabilityZones": [AZ1, AZ2],
            "primaryAZ": primary,
            "pairs": [{"id": f"p{i}", "productionVolumeID": f"v{i}"}],
        }
        for i, (name, primary) in enumerate([("alpha", AZ1), ("bravo", AZ2), ("charlie", AZ1)])
    ]
    groups.append({**groups[0], "projectID": "other", "id": "foreign", "pairs": 0})
    return Simulator({"groups": groups}, clock=ManualClock())


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        pytest.param({}, ["g2", "g1", "g0"], id="default-created_at-desc"),
        pytest.param({"sort_key": "name", "sort_dir": "asc"}, ["g0", "g1", "g2"], id="name-asc"),
        pytest.param({"limit": "2"}, ["g2", "g1"], id="limit"),
        pytest.param({"limit": "1", "offset": "1"}, ["g1"], id="offset"),
        pytest.param({"marker": "g2"}, ["g1", "g0"], id="marker"),
        pytest.param({"name": "bravo"}, ["g1"], id="name-filter"),
        pytest.param({"priority_station": AZ1}, ["g2", "g0"], id="priority-station-filter"),
        pytest.param({"status": "error"}, [], id="status-filter"),
        pytest.param({"volume_id": "v2"}, ["g2"], id="volume-filter"),
        pytest.param({"changes-since": "2000-01-01T00:00:00Z"}, ["g2", "g1", "g0"], id="changes-since-past"),
        pytest.param({"changes-since": "2999-01-01T00:00:00"}, [], id="changes-since-future"),
    ],
)
def test_list_groups_filters_sorts_and_pages(query: dict[str, str], ids: list[str]) -> None:
    views = listing_sim().engine.list_groups(PROJECT, query)
    assert [v["id"] for v in views] == ids


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"limit": "0"}, id="limit-0"),
        pytest.param({"limit": "1001"}, id="limit-1001"),
        pytest.param({"limit": "many"}, id="limit-text"),
        pytest.param({"offset": "-1"}, id="offset-negative"),
        pytest.param({"sort_key": "colour"}, id="sort-key"),
        pytest.param({"sort_dir": "up"}, id="sort-dir"),
        pytest.param({"marker": "ghost"}, id="marker"),
        pytest.param({"changes-since": "yesterday"}, id="changes-since"),
    ],
)
def test_list_rejects_bad_query_parameters(query: dict[str, str]) -> None:
    with pytest.raises(ApiError) as caught:
        listing_sim().engine.list_groups(PROJECT, query)
    assert caught.value.status == 400


def test_list_pairs_filters_by_group_and_volume() -> None:
    engine = listing_sim().engine
    assert [p["id"] for p in engine.list_pairs(PROJECT, {"replication_consistency_group_id": "g1"})] == ["p1"]
    assert [p["id"] for p in engine.list_pairs(PROJECT, {"volume_id": "v0"})] == ["p0"]
    pair = engine.show_pair(PROJECT, "p0")
    assert [p["id"] for p in engine.list_pairs(PROJECT, {"volume_ids": pair["volume_ids"]})] == ["p0"]


# ------------------------------------------------------------------------------ seeds


def test_demo_seed_loads_with_stable_ids() -> None:
    first, second = load_seed(DEMO_SEED), load_seed(DEMO_SEED)
    sim = Simulator(first)
    assert first == second
    assert GROUP in {g["id"] for g in sim.groups()}
    assert sim.describe()["credentials"] == [{"accessKey": "AKEXAMPLE0000000000"}]


@pytest.mark.parametrize(
    ("document", "messages"),
    [
        pytest.param(
            {"groups": [{"projectID": "p", "availabilityZones": [AZ1, AZ2], "primaryAZ": "az3.dc3"}]},
            ["groups[0]", "primaryAZ 'az3.dc3' is not one of availabilityZones"],
            id="primary-not-in-azs",
        ),
        pytest.param(
            {"groups": [{"projectID": "p", "availabilityZones": [AZ1, AZ1], "primaryAZ": AZ1}]},
            ["two different AZs"],
            id="same-az-twice",
        ),
        pytest.param(
            {
                "groups": [
                    {"projectID": "p", "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1, "status": "ok"}
                ]
            },
            ["groups[0].status"],
            id="bad-status",
        ),
        pytest.param(
            {"groups": [{"projectID": "p", "availabilityZones": [AZ1, AZ2], "primaryAz": AZ1}]},
            ["groups[0].primaryAZ: Field required", "groups[0].primaryAz: Extra inputs are not permitted"],
            id="misspelt-key",
        ),
        pytest.param(
            {
                "groups": [
                    {"projectID": "p", "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1, "pairs": 1000}
                ]
            },
            ["groups[0].pairs"],
            id="too-many-pairs",
        ),
        pytest.param(
            {
                "groups": [{"projectID": "p", "id": "x", "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1}]
                * 2
            },
            ["duplicate groups: x"],
            id="duplicate-groups",
        ),
        pytest.param(
            {"credentials": [{"accessKey": "AK"}]}, ["credentials[0].secretKey"], id="no-secret-key"
        ),
        pytest.param(
            {"timings": {"switchoverSeconds": -1}}, ["timings.switchoverSeconds"], id="negative-timing"
        ),
        pytest.param(
            {"users": [{"name": "u", "password": "p"}]}, ["users[0].domain"], id="user-without-domain"
        ),
        pytest.param(["not", "a", "mapping"], ["must be a mapping"], id="not-a-mapping"),
    ],
)
def test_seed_validation_names_the_bad_field(document: Any, messages: list[str]) -> None:
    with pytest.raises(SeedError) as caught:
        parse_seed(document, "test.yaml")
    for message in messages:
        assert message in str(caught.value)
    assert "test.yaml" in str(caught.value)


def test_seed_accepts_a_numeric_fault_level() -> None:
    seed = parse_seed(
        {"groups": [{"projectID": "p", "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1, "faultLevel": 2}]}
    )
    assert seed.groups[0].fault_level == "2"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read", id="missing-file"),
        pytest.param("groups: [unclosed", "not valid YAML", id="bad-yaml"),
        pytest.param('{"timings": {"syncSeconds": "soon"}}', "timings.syncSeconds", id="json-bad-field"),
    ],
)
def test_load_seed_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "seed.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SeedError, match=message):
        load_seed(path)


def test_adding_a_conflicting_seed_changes_nothing() -> None:
    sim, _ = make_sim()
    clash = {
        "credentials": [{"accessKey": "NEW", "secretKey": "S"}],
        "groups": [{"projectID": PROJECT, "id": GROUP, "availabilityZones": [AZ1, AZ2], "primaryAZ": AZ1}],
    }
    with pytest.raises(SeedError, match=f"group {GROUP}"):
        sim.add_seed(clash)
    assert "NEW" not in sim.identity.credentials
    sim.add_seed({"timings": {"switchoverSeconds": 1}})
    assert sim.engine.timings.switchover_seconds == 1
    assert sim.engine.timings.copying_seconds == 3  # untouched fields keep their value


# ------------------------------------------------------------------------------ clocks and faults


def test_wall_clock_follows_the_steady_clock_and_advance_moves_both() -> None:
    clock = ManualClock(start=50)
    sim_clock = SimClock(clock)
    wall = sim_clock.wall()
    clock.advance(10)
    sim_clock.advance(5)
    assert sim_clock.now() == 65
    assert sim_clock.wall() == pytest.approx(wall + 15)
    assert sim_clock.wall_at(60) == pytest.approx(wall + 10)
    with pytest.raises(ValueError):
        clock.advance(-1)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"errorRate": 2}, id="rate-above-1"),
        pytest.param({"drop": {"when": "during"}}, id="bad-drop-when"),
        pytest.param({"throttle": {"count": -1}}, id="negative-count"),
        pytest.param({"rateLimit": {"perSecond": 0}}, id="rate-limit-zero"),
        pytest.param({"rateLimit": {"burst": 5}}, id="rate-limit-without-rate"),
        pytest.param({"rateLimit": {"perSecond": 5, "burst": 0}}, id="rate-limit-empty-bucket"),
        pytest.param({"bogus": True}, id="unknown-key"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_fault_documents_are_validated(document: Any) -> None:
    with pytest.raises(FaultError):
        parse_faults(document)
