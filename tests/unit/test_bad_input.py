"""The bad-input catalog: every malformed or hostile input we know of, and what becomes of it.

Why: an operator that can swap the primary AZ of production storage meets typos, half-finished Secrets,
objects written by other tools and outright hostility. Each of those must end in one of two ways — the
apiserver rejects it at admission with a message naming the field, or the operator refuses it with a
Stalled/Blocked condition whose reason and message say what to fix — and never in a crash, a silent guess, a
second resource acting on the same cloud group, or a secret value in logs, events or status. This file is
that promise written down as two tables, so a new kind of bad input is one more row, not a new test.

1. ``ADMISSION``: what the CRD's structural schema does to a mutated, otherwise valid ReplicationGroup
   (tests/unit/schema.py prunes and validates like the apiserver). Each row names the field the rejection
   must name, and the operator's own model must name it too (defence in depth: objects stored before a CRD
   change, or written when admission was bypassed, reach the operator unvalidated). Unknown fields are the
   exception: the apiserver *prunes* them silently, so those rows assert exactly that, plus the model's
   refusal.
2. ``OPERATOR``: inputs admission accepts (or that reached storage anyway) and the operator must refuse or
   survive. Each row runs in a ``Stage`` next to a healthy resource that flips another group to az2.dc2, and
   asserts the final condition, its reason and what its message tells the user, the mutating cloud calls
   (none unless the row says so), that the healthy resource was switched over exactly once, that every
   status the operator wrote is admissible, and that no secret value leaked.

Fifteen rows first failed here (ten operator bugs, since fixed); they stay as regression cases.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from _pytest.mark import ParameterSet
from harness import GROUP, GROUP2, REVERSE, Stage, resource
from pydantic import ValidationError
from schema import admit, crd_schema, validate, walk_schema

from azswitch.errors import ConfigError
from azswitch.models import ReplicationGroupStatus, parse_spec
from azswitch.reconcile import ANNOTATION_APPROVE, ANNOTATION_RETRY

_Row = TypeVar("_Row")

# --- shared fixtures of the catalog ------------------------------------------------------------------------

T0 = "2026-01-01T00:00:00Z"
UNKNOWN_GROUP = "00000000-0000-0000-0000-000000000000"
NO_ACCESS_PROJECT = "ffffffffffffffffffffffffffffffff"
HOSTILE_SECRET_KEY = "SK-HOSTILE-7d1f0c55e0a94b3f9c2b8e61a4d0f3b2"
HOSTILE_TOKEN = "ST-HOSTILE-0b9e2c7a44f14c0d8e5a7b3c9d1e2f40"
PASSWORD = "hunter2-in-the-url"


def finished(n: int) -> dict[str, Any]:
    """A valid ``history`` entry."""
    return {
        "id": f"op-{n}",
        "action": "Switchover",
        "from": "az2.dc2",
        "to": "az1.dc1",
        "result": "Succeeded",
        "startedAt": T0,
        "finishedAt": T0,
        "durationSeconds": 1.0,
        "attempts": 1,
        "generation": 1,
    }


def huge_history() -> list[dict[str, Any]]:
    """10,000 minimal, well-formed entries (1.3 MiB of JSON, about the most etcd stores in one object)."""
    return [
        {"id": f"op-{n}", "action": "Switchover", "result": "Succeeded", "startedAt": T0, "finishedAt": T0}
        for n in range(10_000)
    ]


def valid_rg() -> dict[str, Any]:
    """A ReplicationGroup with every spec field and a plausible status: admission and the models accept it."""
    body = resource(
        primary="az2.dc2",
        cloud={"endpoint": "https://evs.cn-north-4.example.com"},
        switchover={"approval": "Automatic", "timeout": "30m", "minInterval": "0s"},
        failover={"allowed": False, "autoReprotect": False},
        dryRun=False,
        suspend=False,
    )
    body["status"] = {
        "observedGeneration": 1,
        "phase": "SwitchingOver",
        "groupID": GROUP,
        "availabilityZones": ["az1.dc1", "az2.dc2"],
        "operation": {
            "id": "op-1",
            "action": "Switchover",
            "from": "az1.dc1",
            "to": "az2.dc2",
            "state": "Requested",
            "requestedAt": T0,
            "startedAt": T0,
            "attempts": 1,
            "generation": 1,
        },
        "history": [finished(0)],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "observedGeneration": 1,
                "lastTransitionTime": T0,
                "reason": "SwitchingOver",
                "message": "Switchover op-1 Requested",
            }
        ],
    }
    return body


# --- edits of a valid object, by field path ("spec.cloud.projectID", "status.conditions[0].status") -------

Edit = Callable[[dict[str, Any]], None]
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _locate(obj: dict[str, Any], path: str) -> tuple[Any, str | int]:
    keys: list[str | int] = [int(index) if index else name for name, index in _TOKEN.findall(path)]
    node: Any = obj
    for key in keys[:-1]:
        node = node[key]
    return node, keys[-1]


def put(path: str, value: Any) -> Edit:
    def edit(obj: dict[str, Any]) -> None:
        parent, key = _locate(obj, path)
        parent[key] = value

    return edit


def drop(path: str) -> Edit:
    def edit(obj: dict[str, Any]) -> None:
        parent, key = _locate(obj, path)
        del parent[key]

    return edit


def rename(path: str, new_name: str) -> Edit:
    def edit(obj: dict[str, Any]) -> None:
        parent, key = _locate(obj, path)
        parent[new_name] = parent.pop(key)

    return edit


def lookup(obj: Any, path: str) -> Any:
    parent, key = _locate(obj, path)
    return parent[key]


# --- table 1: admission ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdmissionCase:
    edit: Edit
    #: The field the rejection (or the pruning) must name, exactly.
    path: str
    #: "refused": the apiserver rejects the write. "pruned": it silently drops the field and accepts.
    outcome: str = "refused"
    #: A value that must not be echoed back by the operator's model (it could be a credential).
    unechoed: str | None = None


def refused(id_: str, edit: Edit, path: str) -> ParameterSet:
    return pytest.param(AdmissionCase(edit, path), id=id_)


def pruned(id_: str, edit: Edit, path: str, *, unechoed: str | None = None) -> ParameterSet:
    return pytest.param(AdmissionCase(edit, path, "pruned", unechoed), id=id_)


ADMISSION: list[ParameterSet] = [
    # Required fields.
    refused("missing-spec", drop("spec"), "spec"),
    refused("missing-groupID", drop("spec.groupID"), "spec.groupID"),
    refused("missing-primaryAZ", drop("spec.primaryAZ"), "spec.primaryAZ"),
    refused("missing-cloud", drop("spec.cloud"), "spec.cloud"),
    refused("missing-region", drop("spec.cloud.region"), "spec.cloud.region"),
    refused("missing-projectID", drop("spec.cloud.projectID"), "spec.cloud.projectID"),
    refused(
        "missing-credentialsSecretRef",
        drop("spec.cloud.credentialsSecretRef"),
        "spec.cloud.credentialsSecretRef",
    ),
    refused(
        "missing-secret-name",
        drop("spec.cloud.credentialsSecretRef.name"),
        "spec.cloud.credentialsSecretRef.name",
    ),
    # A typo in a required field's name: pruned first, then the real field is missing.
    refused("typo-instead-of-primaryAZ", rename("spec.primaryAZ", "primaryAz"), "spec.primaryAZ"),
    # Empty strings.
    refused("empty-groupID", put("spec.groupID", ""), "spec.groupID"),
    refused("empty-primaryAZ", put("spec.primaryAZ", ""), "spec.primaryAZ"),
    refused("empty-region", put("spec.cloud.region", ""), "spec.cloud.region"),
    refused("empty-projectID", put("spec.cloud.projectID", ""), "spec.cloud.projectID"),
    refused(
        "empty-secret-name",
        put("spec.cloud.credentialsSecretRef.name", ""),
        "spec.cloud.credentialsSecretRef.name",
    ),
    # Oversized values.
    refused("groupID-129-chars", put("spec.groupID", "g" * 129), "spec.groupID"),
    refused("primaryAZ-64-chars", put("spec.primaryAZ", "a" * 64), "spec.primaryAZ"),
    refused("region-65-chars", put("spec.cloud.region", "r" * 65), "spec.cloud.region"),
    refused("projectID-65-chars", put("spec.cloud.projectID", "p" * 65), "spec.cloud.projectID"),
    refused(
        "endpoint-2049-chars",
        put("spec.cloud.endpoint", "https://evs.example.com/" + "a" * 2025),
        "spec.cloud.endpoint",
    ),
    refused(
        "secret-name-254-chars",
        put("spec.cloud.credentialsSecretRef.name", "s" * 254),
        "spec.cloud.credentialsSecretRef.name",
    ),
    # Wrong types.
    refused("primaryAZ-a-number", put("spec.primaryAZ", 5), "spec.primaryAZ"),
    refused("groupID-a-number", put("spec.groupID", 91085433), "spec.groupID"),
    refused("dryRun-yes", put("spec.dryRun", "yes"), "spec.dryRun"),
    refused("suspend-1", put("spec.suspend", 1), "spec.suspend"),
    refused("drift-lowercase", put("spec.drift", "report"), "spec.drift"),
    refused("failover-a-string", put("spec.failover", "true"), "spec.failover"),
    refused("failover-allowed-a-string", put("spec.failover.allowed", "true"), "spec.failover.allowed"),
    refused("autoReprotect-a-number", put("spec.failover.autoReprotect", 0), "spec.failover.autoReprotect"),
    refused("switchover-a-list", put("spec.switchover", ["timeout", "5m"]), "spec.switchover"),
    refused("cloud-a-string", put("spec.cloud", "cn-north-4"), "spec.cloud"),
    refused("timeout-a-number", put("spec.switchover.timeout", 30), "spec.switchover.timeout"),
    # Enums.
    refused("approval-Sometimes", put("spec.switchover.approval", "Sometimes"), "spec.switchover.approval"),
    refused("approval-lower-case", put("spec.switchover.approval", "manual"), "spec.switchover.approval"),
    # Durations.
    refused("timeout-30-minutes", put("spec.switchover.timeout", "30 minutes"), "spec.switchover.timeout"),
    refused("timeout-negative", put("spec.switchover.timeout", "-5m"), "spec.switchover.timeout"),
    refused("timeout-in-days", put("spec.switchover.timeout", "1d"), "spec.switchover.timeout"),
    refused("timeout-empty", put("spec.switchover.timeout", ""), "spec.switchover.timeout"),
    refused("minInterval-5-min", put("spec.switchover.minInterval", "5 min"), "spec.switchover.minInterval"),
    # Endpoints.
    refused("endpoint-without-scheme", put("spec.cloud.endpoint", "evs.example.com"), "spec.cloud.endpoint"),
    refused("endpoint-ftp", put("spec.cloud.endpoint", "ftp://x"), "spec.cloud.endpoint"),
    refused("service-unknown", put("spec.cloud.service", "OBS"), "spec.cloud.service"),
    refused("service-lower-case", put("spec.cloud.service", "sdrs"), "spec.cloud.service"),
    refused("service-not-a-string", put("spec.cloud.service", 1), "spec.cloud.service"),
    refused(
        "endpoint-with-password",
        put("spec.cloud.endpoint", f"https://admin:{PASSWORD}@evs.example.com"),
        "spec.cloud.endpoint",
    ),
    refused(
        "endpoint-with-whitespace",
        put("spec.cloud.endpoint", "https://evs example.com"),
        "spec.cloud.endpoint",
    ),
    # Shapes: IDs and names that would end up in URLs or API paths.
    refused("projectID-with-dashes", put("spec.cloud.projectID", "0123-4567-89ab"), "spec.cloud.projectID"),
    refused("groupID-with-spaces", put("spec.groupID", "orders db"), "spec.groupID"),
    refused("groupID-path-traversal", put("spec.groupID", "../../v3/auth/tokens"), "spec.groupID"),
    refused("groupID-leading-dot", put("spec.groupID", ".hidden"), "spec.groupID"),
    refused("region-upper-case", put("spec.cloud.region", "CN-North-4"), "spec.cloud.region"),
    refused("region-with-slash", put("spec.cloud.region", "cn-north-4/x"), "spec.cloud.region"),
    refused(
        "secret-name-other-namespace",
        put("spec.cloud.credentialsSecretRef.name", "kube-system/admin"),
        "spec.cloud.credentialsSecretRef.name",
    ),
    refused("primaryAZ-with-space", put("spec.primaryAZ", "az1 dc1"), "spec.primaryAZ"),
    # Status written by someone else through the status subresource (validated by the apiserver too).
    refused(
        "status-history-10000-entries",
        put("status.history", huge_history()),
        "status.history",
    ),
    refused(
        "status-operation-unknown-action",
        put("status.operation.action", "Explode"),
        "status.operation.action",
    ),
    refused(
        "status-operation-garbage-timestamp",
        put("status.operation.requestedAt", "yesterday"),
        "status.operation.requestedAt",
    ),
    refused("status-operation-without-id", drop("status.operation.id"), "status.operation.id"),
    refused(
        "status-operation-zero-attempts", put("status.operation.attempts", 0), "status.operation.attempts"
    ),
    refused(
        "status-condition-status-a-boolean",
        put("status.conditions[0].status", True),
        "status.conditions[0].status",
    ),
    refused(
        "status-availabilityZones-numbers",
        put("status.availabilityZones", [1, 2]),
        "status.availabilityZones[0]",
    ),
    # Unknown fields: pruned, not rejected (no x-kubernetes-preserve-unknown-fields anywhere).
    pruned(
        "unknown-field-secret-pasted-into-spec",
        put("spec.cloud.secretKey", HOSTILE_SECRET_KEY),
        "spec.cloud.secretKey",
        unechoed=HOSTILE_SECRET_KEY,
    ),
    pruned("unknown-field-typo-next-to-primaryAZ", put("spec.primaryAz", "az1.dc1"), "spec.primaryAz"),
    pruned("unknown-field-typo-timout", put("spec.switchover.timout", "5m"), "spec.switchover.timout"),
    pruned("unknown-field-replicas", put("spec.replicas", 3), "spec.replicas"),
]


def _model_paths(edited: Mapping[str, Any], path: str) -> str:
    """The operator's own verdict on the edited object, as text (spec) or as field paths (status)."""
    if path.startswith("spec"):
        with pytest.raises(ConfigError) as caught:
            parse_spec(edited.get("spec"))
        return str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        ReplicationGroupStatus.model_validate(edited["status"])
    return "; ".join(
        "status" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]) + ": " + e["msg"]
        for e in invalid.value.errors(include_url=False)
    )


def _names(report: str, path: str) -> bool:
    """Whether a "; "-joined report has a line about exactly ``path``."""
    return re.search(rf"(^|; ){re.escape(path)}:", report) is not None


def test_the_valid_object_is_admitted_and_parsed() -> None:
    body = valid_rg()
    verdict = admit(body)
    assert verdict.accepted, verdict.violations
    assert verdict.pruned == []
    parse_spec(body["spec"])
    ReplicationGroupStatus.model_validate(body["status"])


def test_no_part_of_the_schema_preserves_unknown_fields() -> None:
    """What makes the apiserver prune every unknown field below (instead of storing it for the operator)."""
    preserving = [
        path for path, node in walk_schema(crd_schema()) if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert preserving == []


@pytest.mark.parametrize("case", ADMISSION)
def test_admission(case: AdmissionCase) -> None:
    body = valid_rg()
    case.edit(body)
    verdict = admit(body)
    model = _model_paths(body, case.path)
    if case.outcome == "refused":
        assert verdict.names(case.path), [str(v) for v in verdict.violations]
        assert _names(model, case.path), model
        return
    # Pruned: the write succeeds and the field is simply not stored. (A client that asks for strict field
    # validation — kubectl's default --validate=strict on apiservers >= 1.25 — gets an error naming the field
    # instead; controllers, GitOps tools and --validate=false get this silent prune.) The operator's model
    # forbids unknown fields by name, for objects stored without pruning, and never echoes their values.
    assert case.path in verdict.pruned
    assert verdict.accepted, [str(v) for v in verdict.violations]
    with pytest.raises(KeyError):
        lookup(verdict.stored, case.path)
    assert re.search(rf"(^|; ){re.escape(case.path)}: unknown field", model), model
    if case.unechoed is not None:
        assert case.unechoed not in model


# --- table 2: the operator ---------------------------------------------------------------------------------


class CatalogStage(Stage):
    """The harness Stage with quick cloud operations (the catalog is about input, not timing), and the
    claimant index of controller.py: a resource whose spec is not an object, or has no string groupID,
    claims nothing, as in production."""

    def __init__(self) -> None:
        super().__init__(timings={"switchoverSeconds": 2, "copyingSeconds": 1})

    def claimants(self, group_id: str) -> list[dict[str, Any]]:
        def group_of(body: Mapping[str, Any]) -> str | None:
            spec = body.get("spec")
            group = spec.get("groupID") if isinstance(spec, Mapping) else None
            return group if isinstance(group, str) and group else None

        return [o for o in self.kube.objects.values() if group_of(o) == group_id]


@dataclass(frozen=True)
class Expect:
    """The condition the bad resource must end with, and what its message must tell the user."""

    condition: str
    status: str
    reason: str
    needles: tuple[str, ...] = ()


def stalled(reason: str, *needles: str) -> Expect:
    return Expect("Stalled", "True", reason, needles)


def holding(reason: str, *needles: str) -> Expect:
    """Ready=False for a reason that waits for a person, without Stalled."""
    return Expect("Ready", "False", reason, needles)


def recovered(reason: str = "InSync") -> Expect:
    return Expect("Ready", "True", reason)


Arrange = Callable[[CatalogStage], Awaitable[None] | None]
Check = Callable[[CatalogStage], None]


@dataclass(frozen=True)
class Scenario:
    #: Creates the resource named "bad" (and whatever else the row needs) on a fresh stage.
    arrange: Arrange
    expect: Expect
    #: Something that happens after everything settled once (an edit, an annotation).
    poke: Callable[[CatalogStage], Awaitable[None] | None] | None = None
    #: Mutating cloud calls allowed outside the healthy resource's group (for the bad resource, or its rival).
    mutations: int = 0
    #: Values that must never be shown in status, events or logs (besides every Secret's secret values).
    hidden: tuple[str, ...] = ()
    check: Check | None = None


def scenario(
    id_: str,
    arrange: Arrange,
    expect: Expect,
    *,
    poke: Callable[[CatalogStage], Awaitable[None] | None] | None = None,
    mutations: int = 0,
    hidden: tuple[str, ...] = (),
    check: Check | None = None,
) -> ParameterSet:
    return pytest.param(Scenario(arrange, expect, poke, mutations, hidden, check), id=id_)


def create_bad(
    stage: CatalogStage,
    *,
    name: str = "bad",
    group: str = GROUP,
    primary: str = "az2.dc2",
    status: dict[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    edit: Edit | None = None,
    created: str | None = None,
    **spec: Any,
) -> None:
    """A resource that, were it valid, would switch ``group`` over to ``primary`` (so 0 calls means refused).
    ``edit`` changes the object after admission would have checked it (e.g. stored under an older CRD)."""
    body = resource(name=name, group=group, primary=primary, **spec)
    if edit is not None:
        edit(body)
    if status is not None:
        body["status"] = status
    if annotations:
        body["metadata"]["annotations"].update(annotations)
    if created:
        body["metadata"]["creationTimestamp"] = created
    stage.kube.create(body)


def bad(**kwargs: Any) -> Arrange:
    return lambda stage: create_bad(stage, **kwargs)


def bypassed(edit: Edit, **kwargs: Any) -> Arrange:
    """A resource stored without admission's checks (an older CRD, or a cluster that lost the schema)."""
    return bad(edit=edit, **kwargs)


def with_secret(data: dict[str, str] | None, **kwargs: Any) -> Arrange:
    """The bad resource reads its own Secret ``bad-credentials`` (absent when ``data`` is None)."""

    def arrange(stage: CatalogStage) -> None:
        if data is not None:
            stage.kube.secrets[("payments", "bad-credentials")] = data
        create_bad(stage, cloud={"credentialsSecretRef": {"name": "bad-credentials"}}, **kwargs)

    return arrange


def journal(stage: CatalogStage, **overrides: Any) -> dict[str, Any]:
    """A status.operation as the operator writes it (Switchover az1 → az2, requested now), then edited."""
    now = stage.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    entry: dict[str, Any] = {
        "id": "op-garbage",
        "action": "Switchover",
        "from": "az1.dc1",
        "to": "az2.dc2",
        "state": "Requested",
        "requestedAt": now,
        "startedAt": now,
        "attempts": 1,
        "generation": 1,
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


def with_status(make: Callable[[CatalogStage], dict[str, Any]], **kwargs: Any) -> Arrange:
    return lambda stage: create_bad(stage, status=make(stage), **kwargs)


def manual(annotation: str) -> Arrange:
    return bad(switchover={"approval": "Manual"}, annotations={ANNOTATION_APPROVE: annotation})


async def _two_claimants(stage: CatalogStage) -> None:
    create_bad(stage, name="owner", primary="az2.dc2")
    create_bad(stage, primary="az1.dc1")  # same group, created later, wants it back


async def _late_duplicate(stage: CatalogStage) -> None:
    # The watch delivered the newer resource first; it started a switchover before the operator saw the
    # older one (an ordering kopf does not rule out across namespaces or after a restart).
    create_bad(stage, name="owner", primary="az2.dc2")
    await stage.step("owner")
    create_bad(stage, primary="az1.dc1", created="2025-12-31T00:00:00Z")


def _change_group_id(stage: CatalogStage) -> None:
    stage.kube.edit_spec("bad", groupID=UNKNOWN_GROUP, primaryAZ="az2.dc2")


def _fail_the_switchover(stage: CatalogStage) -> None:
    stage.sim.fail_next(GROUP, "reverse", "37000212")
    create_bad(stage)


def _repair_and_retry_the_wrong_id(stage: CatalogStage) -> None:
    stage.sim.patch_group(GROUP, status="available")  # the provider repaired the group
    stage.kube.annotate("bad", ANNOTATION_RETRY, "not-the-operation-id")


def _retry_as_advised(stage: CatalogStage) -> None:
    stalled_ = stage.condition("Stalled", "bad")
    advised = re.search(rf"{re.escape(ANNOTATION_RETRY)}=(\S+)", stalled_["message"]) if stalled_ else None
    if advised:
        stage.kube.annotate("bad", ANNOTATION_RETRY, advised.group(1))


def _history_is_trimmed(stage: CatalogStage) -> None:
    assert len(stage.status("bad")["history"]) == 10


def _owner_kept_its_switchover(stage: CatalogStage) -> None:
    assert stage.status("owner")["currentPrimaryAZ"] == "az2.dc2"
    assert stage.sim.group(GROUP)["primaryAZ"] == "az2.dc2"


def _explode_is_reported(stage: CatalogStage) -> None:
    assert any("Explode" in e["message"] for e in stage.kube.events if e["name"] == "bad"), stage.kube.events


APPROVE_ONE = f"{ANNOTATION_APPROVE}=1"

# The two rows the no-leak test below replays with hostile Secret values.
WRONG_CREDENTIALS = scenario(
    "wrong-credentials",
    with_secret(
        {"accessKey": "AKWRONG0000000000000", "secretKey": HOSTILE_SECRET_KEY, "securityToken": HOSTILE_TOKEN}
    ),
    stalled("CredentialsRejected", "bad-credentials", "update the Secret"),
)
HUGE_STATUS = scenario(
    "status-history-of-10000-entries",
    bad(status={"history": huge_history()}),
    recovered(),
    mutations=1,
    check=_history_is_trimmed,
)

OPERATOR: list[ParameterSet] = [
    # Endpoints the schema admits but the transport rules refuse.
    scenario(
        "http-endpoint-to-a-remote-host",
        bad(cloud={"endpoint": "http://evs.cn-north-4.example.com"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint", "use https", "AZSWITCH_ALLOW_INSECURE_ENDPOINTS"),
    ),
    scenario(
        "http-endpoint-to-a-loopback-look-alike",
        bad(cloud={"endpoint": "http://localhost.attacker.example"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint", "AZSWITCH_ALLOW_INSECURE_ENDPOINTS"),
    ),
    scenario(
        "endpoint-with-a-path",
        bad(cloud={"endpoint": "https://evs.example.com/v2"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint", "drop the path"),
    ),
    scenario(
        "endpoint-with-a-query",
        bad(cloud={"endpoint": "https://evs.example.com/?region=cn-north-4"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint", "drop the path and query"),
    ),
    scenario(
        "endpoint-unparseable-ipv6",
        bad(cloud={"endpoint": "http://[::1"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint"),
    ),
    scenario(
        "endpoint-non-numeric-port",
        bad(cloud={"endpoint": "https://evs.example.com:abc"}),
        stalled("InvalidEndpoint", "spec.cloud.endpoint"),
    ),
    # A rule the schema cannot express.
    scenario(
        "zero-timeout",
        bad(switchover={"timeout": "0s"}),
        stalled("InvalidSpec", "spec.switchover.timeout", "greater than 0s"),
    ),
    # The cloud disagrees with the spec.
    scenario(
        "primaryAZ-outside-the-pair",
        bad(primary="az9.dc9"),
        stalled("InvalidPrimaryAZ", "az9.dc9", "az1.dc1", "az2.dc2"),
    ),
    scenario(
        "unknown-group",
        bad(group=UNKNOWN_GROUP),
        stalled("GroupNotFound", UNKNOWN_GROUP, "spec.groupID", "spec.cloud.projectID"),
    ),
    scenario(
        "project-the-credentials-cannot-access",
        bad(cloud={"projectID": NO_ACCESS_PROJECT}),
        stalled("CloudRequestRejected", NO_ACCESS_PROJECT, "HTTP 403"),
    ),
    scenario(
        "groupID-changed-after-creation",
        bad(primary="az1.dc1"),  # in sync: status records the group, nothing is sent
        stalled("GroupIDChanged", "spec.groupID is immutable", GROUP, UNKNOWN_GROUP, "restore the old value"),
        poke=_change_group_id,
    ),
    # Secrets.
    scenario(
        "secret-missing",
        with_secret(None),
        stalled(
            "CredentialsNotFound", "payments/bad-credentials", "does not exist", "accessKey and secretKey"
        ),
    ),
    scenario(
        "secret-without-secretKey",
        with_secret({"accessKey": "AKEXAMPLE0000000000"}),
        stalled("CredentialsNotFound", "payments/bad-credentials", "lacks key(s) secretKey"),
    ),
    scenario(
        "secret-without-accessKey",
        with_secret({"secretKey": HOSTILE_SECRET_KEY}),
        stalled("CredentialsNotFound", "payments/bad-credentials", "lacks key(s) accessKey"),
    ),
    scenario(
        "secret-with-empty-values",
        with_secret({"accessKey": "", "secretKey": ""}),
        stalled("CredentialsNotFound", "lacks key(s) accessKey, secretKey"),
    ),
    WRONG_CREDENTIALS,
    scenario(
        "secret-access-key-not-ascii",
        with_secret({"accessKey": "AKEXAMPLE000000000é", "secretKey": HOSTILE_SECRET_KEY}),
        stalled("CredentialsNotFound", "payments/bad-credentials", "accessKey"),
    ),
    # Specs that bypassed admission (stored under an older CRD, or by a cluster without the schema).
    scenario(
        "bypassed-admission-duration-in-words",
        bypassed(put("spec.switchover", {"timeout": "30 minutes"})),
        stalled("InvalidSpec", "spec.switchover.timeout", "e.g. 30m"),
    ),
    scenario(
        "bypassed-admission-dryRun-yes",
        bypassed(put("spec.dryRun", "yes")),  # must not be read as true, nor as false
        stalled("InvalidSpec", "spec.dryRun", "use true or false"),
    ),
    scenario(
        "bypassed-admission-drift-unknown",
        bypassed(put("spec.drift", "Ignore")),
        stalled("InvalidSpec", "spec.drift", "use Correct"),
    ),
    scenario(
        "bypassed-admission-cloud-not-an-object",
        bypassed(put("spec.cloud", "cn-north-4")),
        stalled("InvalidSpec", "spec.cloud", "set cloud.region"),
    ),
    scenario(
        "bypassed-admission-spec-not-an-object",
        bypassed(put("spec", ["groupID", GROUP])),
        stalled("InvalidSpec", "spec: Input should be a valid dictionary"),
    ),
    scenario(
        "bypassed-admission-unknown-field",
        bypassed(put("spec.primaryAz", "az1.dc1")),
        stalled("InvalidSpec", "spec.primaryAz: unknown field", "primaryAZ"),
    ),
    scenario(
        "bypassed-admission-password-in-endpoint",
        bypassed(put("spec.cloud.endpoint", f"https://admin:{PASSWORD}@evs.example.com")),
        stalled("InvalidSpec", "spec.cloud.endpoint", "without user info"),
        hidden=(PASSWORD,),
    ),
    # Two resources, one cloud group.
    scenario(
        "two-resources-one-group",
        _two_claimants,
        stalled("DuplicateGroup", GROUP, "payments/owner", "delete one of the two resources"),
        mutations=1,  # the owner's switchover, and nothing else
        check=_owner_kept_its_switchover,
    ),
    scenario(
        "older-duplicate-appears-during-an-operation",
        _late_duplicate,
        stalled("DuplicateGroup", GROUP, "payments/owner"),
        mutations=1,
        check=_owner_kept_its_switchover,
    ),
    scenario(
        "malformed-duplicate-of-the-healthy-group",
        bypassed(put("spec.cloud", "cn-north-4"), group=GROUP2),
        stalled("InvalidSpec", "spec.cloud"),
    ),
    # Annotations.
    scenario("approval-yes", manual("yes"), holding("AwaitingApproval", APPROVE_ONE)),
    scenario("approval-negative", manual("-1"), holding("AwaitingApproval", APPROVE_ONE)),
    scenario("approval-exponent", manual("1e3"), holding("AwaitingApproval", APPROVE_ONE)),
    scenario(
        "approval-of-another-generation",
        manual("2"),
        holding("AwaitingApproval", "approves generation 2", APPROVE_ONE),
    ),
    scenario(
        "approval-5000-digits",
        manual("9" * 5000),
        holding("AwaitingApproval", APPROVE_ONE),
    ),
    scenario(
        "retry-with-a-wrong-operation-id",
        _fail_the_switchover,
        stalled("OperationFailed", "37000212", f"{ANNOTATION_RETRY}="),
        poke=_repair_and_retry_the_wrong_id,
        mutations=1,  # the failed attempt; the wrong id re-arms nothing
    ),
    # Status written by someone else.
    HUGE_STATUS,
    scenario(
        "status-conditions-not-a-list",
        bad(status={"conditions": 5}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-conditions-of-wrong-types",
        bad(status={"conditions": [{"type": 5, "status": True, "reason": None}, "Ready", 7]}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-operation-not-an-object",
        bad(status={"operation": "switching, honest"}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-groupID-rewritten",
        bad(status={"groupID": "someone-elses-group"}),
        stalled("GroupIDChanged", "someone-elses-group", GROUP),
    ),
    scenario(
        "status-operation-unknown-action",
        with_status(lambda s: {"operation": journal(s, action="Explode")}),
        recovered(),
        mutations=1,
        check=_explode_is_reported,
    ),
    scenario(
        "status-operation-garbage-timestamps",
        with_status(lambda s: {"operation": journal(s, requestedAt="yesterday", startedAt="not-a-time")}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-operation-without-id",
        with_status(lambda s: {"operation": journal(s, id=None)}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-operation-attempts-not-a-number",
        with_status(lambda s: {"operation": journal(s, attempts="many")}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-plan-blockers-not-a-list",
        bad(dryRun=True, status={"plan": {"action": "Switchover", "reason": "DryRun", "blockers": 5}}),
        holding("DryRun"),
    ),
    scenario(
        "status-availabilityZones-rewritten",
        bad(status={"groupID": GROUP, "availabilityZones": ["x", "y"]}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-availabilityZones-not-strings",
        bad(status={"groupID": GROUP, "availabilityZones": [1, 2]}),
        recovered(),
        mutations=1,
    ),
    scenario(
        "status-lastOperation-id-not-a-string",
        bad(
            status={
                "lastOperation": {"id": 3, "action": "Switchover", "result": "Failed", "generation": 1}
                | {"startedAt": T0, "finishedAt": T0}
            }
        ),
        recovered(),
        poke=_retry_as_advised,
        mutations=1,
    ),
]


def _status_violations(stage: CatalogStage) -> dict[str, set[str]]:
    schema = crd_schema()["properties"]["status"]
    return {
        obj["metadata"]["name"]: {str(v) for v in validate(obj["status"], schema, "status")}
        for obj in stage.kube.objects.values()
        if "status" in obj
    }


async def _settle_all(stage: CatalogStage) -> None:
    for _namespace, name in list(stage.kube.objects):
        await stage.settle(name)


async def _maybe_await(result: Awaitable[None] | None) -> None:
    if inspect.isawaitable(result):
        await result


def _secret_values(stage: CatalogStage) -> set[str]:
    values = {
        value
        for data in stage.kube.secrets.values()
        for key, value in data.items()
        if key in ("secretKey", "securityToken") and value  # an empty value cannot leak
    }
    assert all(len(v) >= 16 for v in values), "the catalog's secret values must be distinctive to be searched"
    return values


def _published(stage: CatalogStage, caplog: pytest.LogCaptureFixture) -> str:
    """Everything the operator made visible: every status, every event, every log record with its fields."""
    records = [
        {key: value for key, value in vars(record).items() if key not in ("args", "msg")}
        | {"message": record.getMessage()}
        for record in caplog.records
    ]
    statuses = [obj.get("status") for obj in stage.kube.objects.values()]
    return json.dumps([statuses, stage.kube.events, records], default=str) + caplog.text


def _condition(stage: CatalogStage, type_: str, name: str) -> dict[str, Any]:
    got = stage.condition(type_, name)
    assert got is not None, (type_, name, stage.status(name))
    return got


async def play(case: Scenario, caplog: pytest.LogCaptureFixture) -> CatalogStage:
    """The row's resource next to a healthy one: settle everything, poke, settle, then a drift resync."""
    caplog.set_level(logging.DEBUG, logger="azswitch")
    stage = CatalogStage()
    await _maybe_await(case.arrange(stage))
    written_by_others = _status_violations(stage)
    stage.kube.create(resource(name="healthy", group=GROUP2, primary="az2.dc2"))
    await _settle_all(stage)
    if case.poke is not None:
        await _maybe_await(case.poke(stage))
        await _settle_all(stage)
    stage.clock.advance(stage.settings.resync_interval * 1.5)
    await _settle_all(stage)

    # The bad resource ends where the row says, with a message that says what to fix.
    got = stage.condition(case.expect.condition, "bad")
    assert got is not None, stage.status("bad")
    assert (got["status"], got["reason"]) == (case.expect.status, case.expect.reason), got
    for needle in case.expect.needles:
        assert needle in got["message"], (needle, got["message"])
    if case.expect.condition == "Stalled":
        assert _condition(stage, "Ready", "bad")["status"] == "False"
        assert stage.status("bad")["phase"] in ("Blocked", "Failed")
    elif case.expect.status == "False":
        assert stage.condition("Stalled", "bad") is None

    # Nothing was sent for it (or only what the row allows), and the healthy resource was served: once.
    others = [r for r in stage.sim.requests() if r["method"] != "GET" and r["group"] != GROUP2]
    assert len(others) == case.mutations, others
    healthy = [r for r in stage.sim.requests() if r["method"] != "GET" and r["group"] == GROUP2]
    assert [r["action"] for r in healthy] == [REVERSE]
    assert stage.status("healthy")["currentPrimaryAZ"] == "az2.dc2"
    assert _condition(stage, "Ready", "healthy")["status"] == "True"

    # Whatever the operator wrote is admissible (garbage written by others may remain, but no new garbage).
    for name, violations in _status_violations(stage).items():
        new = violations - written_by_others.get(name, set())
        assert not new, (name, sorted(new))

    # No secret value, and nothing the row calls hidden, is shown anywhere.
    published = _published(stage, caplog)
    for value in _secret_values(stage) | set(case.hidden):
        assert value not in published, f"{value!r} leaked"
    if case.check is not None:
        case.check(stage)
    return stage


@pytest.mark.asyncio
@pytest.mark.parametrize("case", OPERATOR)
async def test_operator(case: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    await play(case, caplog)


@pytest.mark.asyncio
@pytest.mark.parametrize("case", [WRONG_CREDENTIALS, HUGE_STATUS])
async def test_secret_values_never_leak(case: Scenario, caplog: pytest.LogCaptureFixture) -> None:
    """Replays two rows with a security token on every Secret, and proves the search was not vacuous."""
    caplog.set_level(logging.DEBUG, logger="azswitch")

    def tokened(stage: CatalogStage) -> Awaitable[None] | None:
        for data in stage.kube.secrets.values():
            data["securityToken"] = HOSTILE_TOKEN
        return case.arrange(stage)

    stage = await play(
        Scenario(tokened, case.expect, case.poke, case.mutations, case.hidden, case.check), caplog
    )
    published = _published(stage, caplog)
    assert {HOSTILE_TOKEN} <= _secret_values(stage)
    assert any(r.levelno == logging.DEBUG and r.name.startswith("azswitch.") for r in caplog.records)
    assert any(e["name"] == "bad" for e in stage.kube.events)  # events were posted, and searched
    for value in _secret_values(stage):
        assert value not in published


def _rows(table: list[ParameterSet], kind: type[_Row]) -> list[_Row]:
    rows = [p.values[0] for p in table]
    assert all(isinstance(row, kind) for row in rows)
    return [row for row in rows if isinstance(row, kind)]


def test_the_catalog_keeps_its_size_and_reach() -> None:
    """So that nobody shrinks the catalog silently: its size, unique ids, and the reasons it reaches."""
    for table in (ADMISSION, OPERATOR):
        ids = [p.id for p in table]
        assert len(ids) == len(set(ids))
    assert len(ADMISSION) >= 30
    assert len(OPERATOR) >= 30
    assert len(ADMISSION) + len(OPERATOR) >= 30
    reasons = {row.expect.reason for row in _rows(OPERATOR, Scenario)}
    assert reasons >= {
        "InvalidSpec",
        "InvalidEndpoint",
        "InvalidPrimaryAZ",
        "GroupNotFound",
        "GroupIDChanged",
        "CredentialsNotFound",
        "CredentialsRejected",
        "DuplicateGroup",
        "AwaitingApproval",
        "OperationFailed",
    }
    named = {row.path for row in _rows(ADMISSION, AdmissionCase)}
    spec_fields = {path for path, _ in walk_schema(crd_schema()["properties"]["spec"], "spec")}
    assert spec_fields - named == set(), "every spec field has at least one admission row"
