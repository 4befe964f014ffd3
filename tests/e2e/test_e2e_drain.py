"""ZoneDrain end to end: ``kubectl apply`` of a drain moves exactly the matching groups off the zone with no
spec changed, ``kubectl delete`` (or its expiry) brings them back, the drain's status names what is blocked,
and the apiserver refuses a malformed drain.

Drains are cluster-scoped and the session's operator serves every test's namespace, so each drain here
selects only its own test's groups (a label unique to the test) and is deleted when the test ends.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import AZ1, AZ2, E2E, OPERATION_TIMEOUT

from azswitch.dev.localenv import LocalEnvError

pytestmark = pytest.mark.e2e


def drain_manifest(name: str, label: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ZoneDrain",
        "metadata": {"name": name},
        "spec": {"zone": AZ1, "selector": {"matchLabels": {"e2e-drain": label}}, **spec},
    }


@contextlib.contextmanager
def drained(e2e: E2E, name: str, label: str, **spec: Any) -> Iterator[None]:
    e2e.kubectl.apply([drain_manifest(name, label, **spec)])
    try:
        yield
    finally:
        e2e.kubectl.run("delete", "zonedrain", name, "--ignore-not-found", check=False)


def labelled(manifest: dict[str, Any], label: str) -> dict[str, Any]:
    manifest["metadata"]["labels"] = {"e2e-drain": label}
    return manifest


def drain(e2e: E2E, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = e2e.kubectl.json("get", "zonedrain", name)
    return obj


def wait_status(e2e: E2E, ns: str, name: str, what: str, predicate: Any) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = e2e.rg(ns, name).get("status") or {}
        return status if predicate(status) else None

    return e2e.wait(check, f"{ns}/{name}: {what}", timeout=OPERATION_TIMEOUT)


def test_a_selector_drain_moves_exactly_the_matching_groups_and_deleting_it_brings_them_back(
    e2e: E2E, ns: str, secret: str
) -> None:
    moved, away, untouched = e2e.new_group(AZ1), e2e.new_group(AZ2), e2e.new_group(AZ1)
    e2e.kubectl.apply(
        [
            labelled(e2e.rg_manifest(ns, "orders-db", moved, primary=AZ1), ns),
            labelled(e2e.rg_manifest(ns, "ledger-db", away, primary=AZ2), ns),
            e2e.rg_manifest(ns, "web-cache", untouched, primary=AZ1),
        ]
    )
    for name in ("orders-db", "ledger-db", "web-cache"):
        e2e.wait_condition(ns, name, "Ready", "True")
    specs = {name: e2e.rg(ns, name)["spec"] for name in ("orders-db", "ledger-db", "web-cache")}

    zd = f"az1-{ns}"[:63]
    with drained(e2e, zd, ns, comment="INC-4711"):
        e2e.kubectl.run("wait", "--for=condition=Ready", f"zonedrain/{zd}", "--timeout=120s", timeout=150)
        status = drain(e2e, zd)["status"]
        assert (
            status["phase"],
            status["matchedGroups"],
            status["drainedGroups"],
            status["blockedGroups"],
        ) == (
            "Drained",
            2,
            2,
            0,
        )
        orders = e2e.rg(ns, "orders-db")["status"]
        assert (orders["currentPrimaryAZ"], orders["effectivePrimaryAZ"], orders["drainedBy"]) == (
            AZ2,
            AZ2,
            zd,
        )
        assert e2e.rg(ns, "web-cache")["status"]["currentPrimaryAZ"] == AZ1
        assert {n: e2e.rg(ns, n)["spec"] for n in specs} == specs, "no spec was written"
        assert (e2e.sim.reverses(moved), e2e.sim.reverses(away), e2e.sim.reverses(untouched)) == (1, 0, 0)
        table = e2e.kubectl.run("get", "rg", "-n", ns).stdout
        assert any(line.startswith("orders-db") and zd in line for line in table.splitlines()), table
        started = [e["message"] for e in e2e.events(ns, "orders-db") if e["reason"] == "SwitchoverStarted"]
        assert started and zd in started[-1]
        zd_events = json.loads(
            e2e.kubectl.run(
                "get",
                "events",
                "-n",
                "default",
                "--field-selector",
                f"involvedObject.name={zd}",
                "-o",
                "json",
            ).stdout
        )["items"]
        assert {"DrainStarted", "Drained"} <= {e["reason"] for e in zd_events}

    wait_status(
        e2e,
        ns,
        "orders-db",
        "back in az1",
        lambda s: s.get("currentPrimaryAZ") == AZ1 and "drainedBy" not in s,
    )
    assert e2e.sim.reverses(moved) == 2
    assert (e2e.sim.reverses(away), e2e.sim.reverses(untouched)) == (0, 0)
    assert {n: e2e.rg(ns, n)["spec"] for n in specs} == specs


def test_an_expiry_brings_the_groups_back_and_the_drain_stays_expired(e2e: E2E, ns: str, secret: str) -> None:
    group = e2e.new_group(AZ1)
    e2e.kubectl.apply([labelled(e2e.rg_manifest(ns, "orders-db", group, primary=AZ1), ns)])
    e2e.wait_condition(ns, "orders-db", "Ready", "True")
    zd = f"exp-{ns}"[:63]
    expires = (datetime.now(UTC) + timedelta(seconds=25)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with drained(e2e, zd, ns, expiresAt=expires):
        wait_status(e2e, ns, "orders-db", "drained to az2", lambda s: s.get("currentPrimaryAZ") == AZ2)
        wait_status(
            e2e,
            ns,
            "orders-db",
            "back after the expiry",
            lambda s: s.get("currentPrimaryAZ") == AZ1 and "drainedBy" not in s,
        )
        e2e.wait(
            lambda: drain(e2e, zd).get("status", {}).get("phase") == "Expired" or None,
            "the drain shown Expired",
            timeout=60,
        )
        ready = next(c for c in drain(e2e, zd)["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "Expired")
    assert e2e.sim.reverses(group) == 2


def test_a_blocked_group_shows_in_the_drain_status(e2e: E2E, ns: str, secret: str) -> None:
    healthy, paused = e2e.new_group(AZ1), e2e.new_group(AZ1, replicationStatus="active-stopped")
    e2e.kubectl.apply(
        [
            labelled(e2e.rg_manifest(ns, "orders-db", healthy, primary=AZ1), ns),
            labelled(e2e.rg_manifest(ns, "reports-db", paused, primary=AZ1), ns),
        ]
    )
    e2e.wait_condition(ns, "orders-db", "Ready", "True")
    zd = f"blk-{ns}"[:63]
    with drained(e2e, zd, ns):

        def blocked() -> dict[str, Any] | None:
            status = drain(e2e, zd).get("status") or {}
            return status if status.get("drainedGroups") == 1 and status.get("blockedGroups") == 1 else None

        status = e2e.wait(blocked, "one drained, one blocked", timeout=OPERATION_TIMEOUT)
        (entry,) = status["blocked"]
        assert (entry["namespace"], entry["name"]) == (ns, "reports-db")
        assert entry["reason"] and entry["message"]
        assert status["phase"] == "Draining"
        assert e2e.sim.reverses(paused) == 0, "a drain never overrides a gate"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        pytest.param({"zone": "az 1"}, "spec.zone", id="bad-zone"),
        pytest.param({"zone": AZ1, "expiresAt": "tomorrow"}, "expiresAt", id="bad-expiry"),
        pytest.param(
            {"zone": AZ1, "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
            "operator",
            id="bad-operator",
        ),
    ],
)
def test_a_malformed_drain_is_refused_by_the_apiserver(e2e: E2E, spec: dict[str, Any], needle: str) -> None:
    manifest = {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ZoneDrain",
        "metadata": {"name": "bad-drain"},
        "spec": spec,
    }
    with pytest.raises(LocalEnvError) as refused:
        e2e.kubectl.apply([manifest])
    assert needle in str(refused.value)
    assert e2e.kubectl.get_optional("zonedrain", "bad-drain") is None
