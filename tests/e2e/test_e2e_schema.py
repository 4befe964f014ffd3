"""The CRD's schema as the apiserver enforces it: invalid ReplicationGroups are refused with a message that
names the field.

Client-side validation is turned off (``--validate=false``) so that it is the apiserver's answer being
checked; that answer is also what Argo CD, Flux and server-side apply show.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from conftest import AZ1, E2E

pytestmark = pytest.mark.e2e

_GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"


def _valid(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "azswitch.io/v1alpha1",
        "kind": "ReplicationGroup",
        "metadata": {"name": "orders-db", "namespace": namespace},
        "spec": {
            "groupID": _GROUP,
            "primaryAZ": AZ1,
            "cloud": {
                "region": "cn-north-4",
                "projectID": "0123456789abcdef0123456789abcdef",
                "credentialsSecretRef": {"name": "evs-credentials"},
            },
        },
    }


def _set(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set (or, with ``...``, delete) a dotted path below ``spec``."""
    *parents, leaf = path.split(".")
    node = obj["spec"]
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value


# (field below spec, value or ... to delete it, what the apiserver's message must say)
CASES = [
    pytest.param("groupID", ..., "spec.groupID: Required value", id="missing-groupID"),
    pytest.param("primaryAZ", ..., "spec.primaryAZ: Required value", id="missing-primaryAZ"),
    pytest.param("cloud", ..., "spec.cloud: Required value", id="missing-cloud"),
    pytest.param("cloud.region", ..., "spec.cloud.region: Required value", id="missing-region"),
    pytest.param(
        "cloud.credentialsSecretRef.name",
        ...,
        "spec.cloud.credentialsSecretRef.name: Required value",
        id="missing-secret-name",
    ),
    pytest.param(
        "switchover.approval",
        "Sometimes",
        'spec.switchover.approval: Unsupported value: "Sometimes"',
        id="bad-enum-approval",
    ),
    pytest.param("dryRun", "yes", "spec.dryRun in body must be of type boolean", id="wrong-type-dryRun"),
    pytest.param("suspend", 1, "spec.suspend in body must be of type boolean", id="wrong-type-suspend"),
    pytest.param(
        "failover", "allowed", "spec.failover in body must be of type object", id="wrong-type-failover"
    ),
    pytest.param("primaryAZ", "az 1", "spec.primaryAZ in body should match", id="bad-pattern-primaryAZ"),
    pytest.param("groupID", "../etc/passwd", "spec.groupID in body should match", id="bad-pattern-groupID"),
    pytest.param(
        "cloud.region", "CN_North_4", "spec.cloud.region in body should match", id="bad-pattern-region"
    ),
    pytest.param(
        "cloud.projectID",
        "not-hex-with-dashes",
        "spec.cloud.projectID in body should match",
        id="bad-projectID",
    ),
    pytest.param(
        "cloud.endpoint",
        "ftp://evs.example",
        "spec.cloud.endpoint in body should match",
        id="bad-endpoint-scheme",
    ),
    pytest.param(
        "switchover.timeout",
        "30 minutes",
        "spec.switchover.timeout in body should match",
        id="bad-duration-words",
    ),
    pytest.param(
        "switchover.timeout", "-5m", "spec.switchover.timeout in body should match", id="bad-duration-neg"
    ),
    pytest.param(
        "switchover.minInterval",
        "1d",
        "spec.switchover.minInterval in body should match",
        id="bad-duration-days",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), CASES)
def test_apiserver_rejects_invalid_resource_naming_the_field(
    e2e: E2E, ns: str, field: str, value: Any, message: str
) -> None:
    obj = copy.deepcopy(_valid(ns))
    _set(obj, field, value)
    result = e2e.kubectl.run("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(obj), check=False)
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert 'ReplicationGroup "orders-db" is invalid' in result.stderr
    assert message in result.stderr, result.stderr
    assert e2e.kubectl.get_optional("replicationgroup", "orders-db", ns) is None


def test_the_valid_base_of_the_table_is_accepted(e2e: E2E, ns: str) -> None:
    """Each case above differs from this resource in one field only, so that field is what is refused."""
    e2e.kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(_valid(ns)))
