"""Break-glass pieces without a cloud: the leader decision (pure), manifests and their errors, credentials
files, the journal file, LocalKube's status writes, when a group is done, and the CLI's bad-input paths
(exit 1, naming the file/field and the fix)."""

from __future__ import annotations

import base64
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from azswitch.breakglass import credentials as creds
from azswitch.breakglass.applying import acts_on, finished
from azswitch.breakglass.cluster import leader_verdict
from azswitch.breakglass.journalfile import JournalFile, default_path
from azswitch.breakglass.localkube import LocalKube, apply_merge_patch
from azswitch.breakglass.manifests import InputError, load_files, parse_documents
from azswitch.breakglass.planning import Row, exit_code
from azswitch.cli import _parser, main
from azswitch.kube import KubeConflict, merge_patch

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
GROUP_ID = "91085433-9499-4a68-b2c6-35072467ccd2"

MANIFEST = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: payments}}
---
apiVersion: azswitch.io/v1alpha1
kind: ReplicationGroup
metadata: {{name: orders, namespace: payments}}
spec:
  groupID: {GROUP_ID}
  primaryAZ: az2.dc2
  cloud: {{region: cn-north-4, projectID: 0123456789abcdef0123456789abcdef, credentialsSecretRef: {{name: evs}}}}
"""


def lease(holder: str, renewed: datetime | None, seconds: int = 15) -> dict[str, Any]:
    spec: dict[str, Any] = {"holderIdentity": holder, "leaseDurationSeconds": seconds}
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"spec": spec}


RUNNING = [
    {"metadata": {"name": "azswitch-1", "namespace": "azswitch-system"}, "status": {"phase": "Running"}}
]
PENDING = [
    {"metadata": {"name": "azswitch-1", "namespace": "azswitch-system"}, "status": {"phase": "Pending"}}
]


@pytest.mark.parametrize(
    ("the_lease", "pods", "readable", "state", "words"),
    [
        (lease("pod_1", NOW - timedelta(seconds=5)), [], True, "leading", "held by pod_1"),
        (
            lease("pod_1", NOW - timedelta(seconds=5)),
            None,
            True,
            "leading",
            "valid until 2026-12-07T12:00:10Z",
        ),
        (lease("pod_1", NOW - timedelta(seconds=16)), [], True, "absent", "released or expired"),
        (lease("", NOW - timedelta(seconds=1)), [], True, "absent", "released or expired"),
        (lease("pod_1", None), [], True, "absent", "released or expired"),
        (lease("pod_1", NOW - timedelta(seconds=16)), RUNNING, True, "leading", "are Running"),
        (None, RUNNING, True, "leading", "no Lease"),
        (None, PENDING, True, "absent", "no operator pod is Running"),
        (None, [], True, "absent", "no Lease azswitch-system/azswitch-leader"),
        (None, None, True, "unknown", "could not be listed"),
        (None, [], False, "unknown", "could not be read"),
    ],
)
def test_leader_verdict(
    the_lease: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None,
    readable: bool,
    state: str,
    words: str,
) -> None:
    verdict = leader_verdict(the_lease, pods, NOW, "azswitch-system/azswitch-leader", lease_readable=readable)
    assert verdict.state == state
    assert words in verdict.message


def test_manifests_skip_other_kinds_and_default_the_namespace() -> None:
    (only,) = parse_documents(MANIFEST, "git/rg.yaml", "default")
    assert only.key == "payments/orders" and only.generation == 1 and only.spec.group_id == GROUP_ID
    (defaulted,) = parse_documents(MANIFEST.replace(", namespace: payments}", "}"), "x.yaml", "ops")
    assert defaulted.key == "ops/orders"
    listed = parse_documents(
        json.dumps({"kind": "List", "items": [json.loads(json.dumps(only.body))]}), "list.json", "default"
    )
    assert [m.key for m in listed] == ["payments/orders"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1, 2\n", "rg.yaml: not valid YAML at line 2"),
        (
            MANIFEST.replace("primaryAZ: az2.dc2", "primaryAZ: 'not an az!'"),
            "document 2 (ReplicationGroup payments/orders): spec.primaryAZ",
        ),
        (MANIFEST.replace("groupID:", "groupId:"), "spec.groupId: unknown field"),
        (
            MANIFEST.replace("azswitch.io/v1alpha1", "azswitch.io/v1"),
            "document 2: apiVersion is 'azswitch.io/v1'; fix: use apiVersion: azswitch.io/v1alpha1",
        ),
        (MANIFEST.replace("name: orders, ", ""), "document 2: metadata.name is missing"),
        (MANIFEST + "---\n" + MANIFEST.split("---\n")[1], "payments/orders is also defined in"),
        ("kind: Namespace\n", "no ReplicationGroup found in"),
    ],
)
def test_manifest_errors_name_the_file_document_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "rg.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as error:
        load_files([str(path)], "default")
    assert expected in str(error.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.yaml: no such file; fix: check the path given to -f"):
        load_files([str(tmp_path / "nope.yaml")], "default")


def test_credentials_files(tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    encoded = {
        k: base64.b64encode(v.encode()).decode() for k, v in {"accessKey": "AK1", "secretKey": "SK1"}.items()
    }
    secret.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "data": encoded}))
    assert creds.from_file(str(secret)) == {"accessKey": "AK1", "secretKey": "SK1"}
    secret.write_text("kind: Secret\nstringData: {accessKey: AK2, secretKey: SK2, securityToken: T}\n")
    assert creds.from_file(str(secret)) == {"accessKey": "AK2", "secretKey": "SK2", "securityToken": "T"}
    env = tmp_path / "creds.env"
    env.write_text("# comment\nexport AZSWITCH_ACCESS_KEY='AK3'\nsecretKey=SK3\n")
    assert creds.from_file(str(env)) == {"accessKey": "AK3", "secretKey": "SK3"}
    env.write_text("AZSWITCH_ACCESS_KEY=AK3\n")
    with pytest.raises(InputError, match=r"creds.env: no secretKey; fix: pass --credentials FILE"):
        creds.from_file(str(env))
    secret.write_text("kind: Secret\ndata: {accessKey: '!!!', secretKey: eA==}\n")
    with pytest.raises(InputError, match=r"data.accessKey is not base64"):
        creds.from_file(str(secret))
    assert creds.from_environment({}) is None
    assert creds.from_environment({"AZSWITCH_ACCESS_KEY": "A", "AZSWITCH_SECRET_KEY": "S"}) == {
        "accessKey": "A",
        "secretKey": "S",
    }


def test_journal_file_last_record_per_key_torn_lines_and_lock(tmp_path: Path) -> None:
    assert default_path({"XDG_STATE_HOME": "/state"}) == Path("/state/azswitch/journal.jsonl")
    assert default_path({"HOME": "/home/u"}) == Path("/home/u/.local/state/azswitch/journal.jsonl")
    path = tmp_path / "j.jsonl"
    warnings: list[str] = []
    journal = JournalFile(path, warnings.append).open()
    journal.append("ns/a", GROUP_ID, "EVS", {"operation": {"id": "op-1", "state": "Requested"}})
    journal.append("ns/a", GROUP_ID, "EVS", {"operation": {"id": "op-1", "state": "InProgress"}})
    journal.append("ns/b", "other", "EVS", {"lastOperation": {"id": "op-2"}})
    with pytest.raises(InputError, match="is locked by another azswitch apply"):
        JournalFile(path).open()
    journal.close()
    with path.open("a") as handle:
        handle.write('{"key": "ns/a", "groupID": "torn')  # a kill mid-write
    again = JournalFile(path, warnings.append).open()
    assert again.last_status("ns/a", GROUP_ID) == {"operation": {"id": "op-1", "state": "InProgress"}}
    assert again.last_status("ns/b", GROUP_ID) is None
    assert any("incomplete" in w for w in warnings) and any("for cloud group other" in w for w in warnings)
    again.append("ns/c", GROUP_ID, "SDRS", {})
    again.close()
    lines = path.read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["key"] == "ns/c" and record["service"] == "SDRS" and record["operationID"] is None
    assert json.loads(lines[1])["operationID"] == "op-1"


def test_merge_patch_round_trip() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "f": "x"}
    new = {"a": 1, "b": {"c": 4}, "e": [2, 3], "g": None}
    assert apply_merge_patch(old, merge_patch(old, new)) == {"a": 1, "b": {"c": 4}, "e": [2, 3]}


async def test_local_kube_checks_the_resource_version_and_journals_before_returning(tmp_path: Path) -> None:
    journal = JournalFile(tmp_path / "j.jsonl").open()
    body = {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"groupID": GROUP_ID, "cloud": {}}}
    events: list[str] = []
    kube = LocalKube(
        {"ns/a": body}, {("ns", "s"): {"accessKey": "A"}}, journal, lambda *a: events.append(a[2])
    )
    updated = await kube.patch_status("ns", "a", "1", {"phase": "Pending", "operation": {"id": "op"}})
    assert updated["metadata"]["resourceVersion"] == "2"
    assert journal.last_status("ns/a", GROUP_ID) == {"phase": "Pending", "operation": {"id": "op"}}
    with pytest.raises(KubeConflict):
        await kube.patch_status("ns", "a", "1", {"phase": "Ready"})
    await kube.patch_status("ns", "a", "2", {"operation": None})
    assert kube.status("ns/a") == {"phase": "Pending"}
    assert await kube.read_secret("ns", "s") == {"accessKey": "A"}
    assert await kube.read_secret("ns", "t") is None
    await kube.post_event(kube.body("ns/a"), "Normal", "SwitchoverStarted", "m")
    assert events == ["SwitchoverStarted"]
    journal.close()


@pytest.mark.parametrize(
    ("status", "done"),
    [
        ({"phase": "Ready"}, True),
        ({"phase": "Ready", "operation": {"id": "x"}}, False),
        ({"phase": "SwitchingOver", "operation": {"id": "x"}}, False),
        ({"phase": "Failed"}, True),
        ({"phase": "Blocked"}, True),
        ({"phase": "AwaitingApproval"}, True),
        ({"phase": "Suspended"}, True),
        ({"phase": "Unknown"}, False),
        ({"phase": "Pending", "plan": {"blockers": [{"kind": "Wait", "reason": "ConcurrencyLimit"}]}}, False),
        ({"phase": "Pending", "plan": {"blockers": [{"kind": "Hold", "reason": "DryRun"}]}}, True),
    ],
)
def test_when_a_break_glass_run_is_done_with_a_group(status: dict[str, Any], done: bool) -> None:
    assert finished(status) is done


def test_which_rows_apply_acts_on_and_plan_exit_codes() -> None:
    def row(**kwargs: Any) -> Row:
        return Row("ns/a", "f", "EVS", GROUP_ID, "az2", current=kwargs.pop("current", "az1"), **kwargs)

    wait = {"reason": "ReplicationSyncing", "kind": "Wait", "message": ""}
    hold = {"reason": "AwaitingApproval", "kind": "Hold", "message": ""}
    assert acts_on(row(action="Switchover"))
    assert acts_on(row(action="Switchover", blockers=[wait]))
    assert not acts_on(row(action="Switchover", blockers=[hold]))
    assert not acts_on(row(action="None", current="az2"))
    assert not acts_on(row(action="Switchover", operation={"id": "x"}))  # the operator's
    assert acts_on(row(action="Switchover", operation={"id": "x"}, resume=True))
    assert not acts_on(row(action="Switchover", error="boom"))
    assert exit_code([row(action="None", current="az2")]) == 0
    assert exit_code([row(action="None", current="az2"), row(action="Switchover")]) == 2
    assert exit_code([row(action="Switchover"), row(error="x")]) == 1


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_the_commands_are_there(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert f"azswitch {command}" in capsys.readouterr().out


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("AZSWITCH_ACCESS_KEY", raising=False)
    monkeypatch.delenv("AZSWITCH_SECRET_KEY", raising=False)


@pytest.mark.usefixtures("no_cluster")
@pytest.mark.parametrize("command", ["plan", "apply"])
def test_bad_input_exits_1_naming_the_problem_and_the_fix(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--yes", "--journal", str(tmp_path / "j.jsonl")] if command == "apply" else []
    assert main([command, "-f", str(tmp_path / "missing.yaml"), *extra]) == 1
    assert "missing.yaml: no such file; fix: check the path given to -f" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    assert main([command, "-f", str(bad), *extra]) == 1
    assert "bad.yaml: not valid YAML at line" in capsys.readouterr().err

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text(MANIFEST.replace("region: cn-north-4", "region: CN_North"))
    assert main([command, "-f", str(invalid), *extra]) == 1
    err = capsys.readouterr().err
    assert "invalid.yaml: document 2 (ReplicationGroup payments/orders): spec.cloud.region" in err
    assert "fix: use a region name such as cn-north-4" in err

    good = tmp_path / "good.yaml"
    good.write_text(MANIFEST)
    assert main([command, "-f", str(good), *extra]) == 1
    err = capsys.readouterr().err
    assert "good.yaml: document 2 (ReplicationGroup payments/orders): no cloud credentials" in err
    assert "fix: pass --credentials FILE" in err and "AZSWITCH_ACCESS_KEY" in err

    assert main([command, "-f", str(good), "--credentials", str(tmp_path / "nope.env"), *extra]) == 1
    assert "nope.env: no such file; fix: check the path given to --credentials" in capsys.readouterr().err


@pytest.mark.usefixtures("no_cluster")
def test_apply_without_a_terminal_needs_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(MANIFEST)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["apply", "-f", str(good), "--journal", str(tmp_path / "j.jsonl")]) == 1
    err = capsys.readouterr().err
    assert "stdin is not a terminal" in err and "fix: pass --yes" in err
    assert not (tmp_path / "j.jsonl").exists()
