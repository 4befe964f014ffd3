"""ZoneDrain semantics (``azswitch.drains``), one table row per situation: selectors, the effective-AZ rule
(matching, both zones drained, expiry, overlapping drains), and what a drain's status counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from azswitch.drains import (
    Drain,
    GroupFacts,
    Hold,
    group_facts,
    hold_for,
    parse_drain,
    selector_matches,
    summarize,
)
from azswitch.models import LabelSelector, ZoneDrainSpec

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
AZ1, AZ2, AZ3 = "az1.dc1", "az2.dc2", "az3.dc3"


def drain(name: str = "az1-outage", zone: str = AZ1, **spec: Any) -> Drain:
    return Drain(name, 1, ZoneDrainSpec.model_validate({"zone": zone, **spec}))


SELECTOR_ROWS = [
    pytest.param(None, {}, True, id="absent-matches-all"),
    pytest.param({}, {"a": "b"}, True, id="empty-matches-all"),
    pytest.param({"matchLabels": {"tier": "db"}}, {"tier": "db", "x": "y"}, True, id="labels-subset"),
    pytest.param({"matchLabels": {"tier": "db"}}, {"tier": "web"}, False, id="labels-differ"),
    pytest.param({"matchLabels": {"tier": "db"}}, {}, False, id="labels-missing"),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]},
        {"tier": "cache"},
        True,
        id="in",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}, {}, False, id="in-absent"
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
        {},
        True,
        id="notin-absent",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
        {"tier": "db"},
        False,
        id="notin-present",
    ),
    pytest.param(
        {"matchExpressions": [{"key": "pci", "operator": "Exists"}]}, {"pci": ""}, True, id="exists"
    ),
    pytest.param(
        {"matchExpressions": [{"key": "pci", "operator": "DoesNotExist"}]}, {"pci": "1"}, False, id="dne"
    ),
    pytest.param(
        {
            "matchLabels": {"tier": "db"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}],
        },
        {"tier": "db", "env": "dev"},
        False,
        id="all-terms-must-hold",
    ),
]


@pytest.mark.parametrize(("selector", "labels", "matches"), SELECTOR_ROWS)
def test_label_selector(selector: dict[str, Any] | None, labels: dict[str, str], matches: bool) -> None:
    parsed = None if selector is None else LabelSelector.model_validate(selector)
    assert selector_matches(parsed, labels) is matches


@pytest.mark.parametrize(
    ("term", "error"),
    [
        ({"key": "tier", "operator": "In"}, "needs at least one value"),
        ({"key": "tier", "operator": "Exists", "values": ["x"]}, "takes no values"),
        ({"key": "tier", "operator": "Near", "values": ["x"]}, "operator"),
        ({"key": "-bad", "operator": "Exists"}, "key"),
    ],
)
def test_bad_selector_terms_are_refused(term: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        LabelSelector.model_validate({"matchExpressions": [term]})


def test_namespace_selector_needs_the_namespace_labels() -> None:
    d = drain(namespaceSelector={"matchLabels": {"env": "prod"}})
    assert d.needs_namespace_labels
    assert d.selects({}, {"env": "prod"})
    assert not d.selects({}, {"env": "dev"})
    assert not d.selects({}, None), "unknown namespace labels never match a namespace selector"
    assert drain().selects({}, None)


HOLD_ROWS = [
    pytest.param(AZ1, [drain()], Hold("az1-outage", AZ1, AZ2), id="spec-in-drained-zone-goes-to-the-other"),
    pytest.param(AZ2, [drain()], None, id="spec-elsewhere-untouched"),
    pytest.param(AZ1, [drain(zone=AZ3)], None, id="zone-not-in-the-pair"),
    pytest.param(AZ1, [], None, id="no-drain"),
    pytest.param(
        AZ1, [drain(), drain("az2-too", AZ2)], Hold("az1-outage", AZ1, None), id="both-zones-drained"
    ),
    pytest.param(
        AZ1,
        [drain("zz-second"), drain("aa-first")],
        Hold("aa-first", AZ1, AZ2),
        id="two-drains-of-one-zone-name-the-first",
    ),
    pytest.param(AZ1, [drain(expiresAt="2026-12-07T02:59:59Z")], None, id="expired"),
    pytest.param(AZ1, [drain(expiresAt="2026-12-07T03:00:00Z")], None, id="expires-now"),
    pytest.param(
        AZ1, [drain(expiresAt="2026-12-07T03:00:01Z")], Hold("az1-outage", AZ1, AZ2), id="not-yet-expired"
    ),
    pytest.param(
        AZ1,
        [drain(), drain("az2-gone", AZ2, expiresAt="2026-12-07T01:00:00Z")],
        Hold("az1-outage", AZ1, AZ2),
        id="the-other-zones-drain-expired",
    ),
    pytest.param(
        AZ1, [drain(comment="INC-4711")], Hold("az1-outage", AZ1, AZ2, "INC-4711"), id="comment-kept"
    ),
    pytest.param(AZ1, [Drain("broken", 1, None, "spec.zone: bad")], None, id="invalid-drain-holds-nothing"),
]


@pytest.mark.parametrize(("spec_primary", "drains", "hold"), HOLD_ROWS)
def test_effective_az_rule(spec_primary: str, drains: list[Drain], hold: Hold | None) -> None:
    assert hold_for(spec_primary, (AZ1, AZ2), drains, NOW) == hold


def test_unknown_zones_hold_nothing() -> None:
    assert hold_for(AZ1, (), [drain()], NOW) is None


def test_hold_words_name_the_drain_and_its_comment() -> None:
    assert Hold("az1-outage", AZ1, AZ2, "INC-4711").words == "ZoneDrain az1-outage (INC-4711)"
    assert Hold("az1-outage", AZ1, AZ2).words == "ZoneDrain az1-outage"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"zone": "az 1"}, "spec.zone"),
        ({}, "spec.zone"),
        ({"zone": AZ1, "expiresAt": "tomorrow"}, "spec.expiresAt"),
        ({"zone": AZ1, "expiresAt": "2026-12-08T06:00:00"}, "time zone"),
        ({"zone": AZ1, "surprise": 1}, "spec.surprise"),
    ],
)
def test_an_invalid_drain_is_kept_with_the_field_named(spec: dict[str, Any], needle: str) -> None:
    parsed = parse_drain({"metadata": {"name": "d", "generation": 2}, "spec": spec})
    assert parsed.spec is None and parsed.invalid is not None and needle in parsed.invalid
    assert not parsed.active(NOW)


def facts(
    name: str, current: str | None, *, zones: tuple[str, ...] = (AZ1, AZ2), **fields: Any
) -> GroupFacts:
    values: dict[str, Any] = {
        "namespace": "payments",
        "name": name,
        "labels": {"tier": "db"},
        "spec_primary": AZ1,
        "zones": zones,
        "current": current,
        "drained_by": None,
        "in_flight": False,
        "blocker": None,
    }
    values.update(fields)
    return GroupFacts(**values)


def test_summary_counts_matched_drained_moving_and_blocked() -> None:
    groups = [
        facts("off", AZ2),
        facts("moving", AZ1, in_flight=True),
        facts("stuck", AZ1, blocker=("SwitchoverImpossible", "replication is inactive")),
        facts("planning", AZ1),
        facts("other-pair", AZ2, zones=(AZ2, AZ3)),  # the zone is not one of its AZs
        facts("web", AZ1, labels={"tier": "web"}),  # not selected
        facts("new", None, zones=(), spec_primary=AZ1),  # AZs not yet known, but it asks for the zone
    ]
    s = summarize(drain(selector={"matchLabels": {"tier": "db"}}), groups, {})
    assert (s.matched, s.drained, s.moving) == (5, 1, 1)
    assert s.blocked == (("payments", "stuck", "SwitchoverImpossible", "replication is inactive"),)
    assert not s.done


def test_summary_of_nothing_matched_is_done() -> None:
    assert summarize(drain(zone=AZ3), [facts("a", AZ1)], {}).done


def test_group_facts_from_a_resource_body() -> None:
    body = {
        "metadata": {"namespace": "payments", "name": "orders", "labels": {"tier": "db"}},
        "spec": {"primaryAZ": AZ1},
        "status": {
            "availabilityZones": [AZ1, AZ2],
            "currentPrimaryAZ": AZ1,
            "drainedBy": "az1-outage",
            "operation": {"id": "op"},
            "plan": {"blockers": [{"reason": "CooldownActive", "message": "wait"}]},
        },
    }
    f = group_facts(body)
    assert (f.zones, f.current, f.drained_by, f.in_flight, f.blocker) == (
        (AZ1, AZ2),
        AZ1,
        "az1-outage",
        True,
        ("CooldownActive", "wait"),
    )
    assert group_facts({"metadata": {"name": "x"}}).zones == ()


def test_expiry_is_exact() -> None:
    d = drain(expiresAt=(NOW + timedelta(seconds=1)).isoformat())
    assert d.active(NOW) and not d.expired(NOW)
    assert d.expired(NOW + timedelta(seconds=1)) and not d.active(NOW + timedelta(seconds=1))
