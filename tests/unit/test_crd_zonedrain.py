"""The ZoneDrain CRD is structural, documented, cluster-scoped, and says exactly what ``azswitch.models``
says (the same comparison as ``test_crd.py`` for ReplicationGroup)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from test_crd import differences, schema_errors, walk

from azswitch.models import ZoneDrainSpec, ZoneDrainStatus

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "zonedrains.azswitch.io.yaml"


@functools.cache
def crd() -> dict[str, Any]:
    loaded = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def root() -> dict[str, Any]:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


@pytest.mark.parametrize(
    ("section", "model", "defaults"),
    [
        pytest.param("spec", ZoneDrainSpec, True, id="spec"),
        pytest.param("status", ZoneDrainStatus, False, id="status"),
    ],
)
def test_crd_and_models_agree(section: str, model: type[BaseModel], defaults: bool) -> None:
    problems = differences(root()["properties"][section], model, section, defaults=defaults)
    assert not problems, "CRD and models disagree:\n" + "\n".join(problems)


def test_identity_and_scope() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "zonedrains.azswitch.io"
    assert (spec["group"], spec["scope"]) == ("azswitch.io", "Cluster")
    assert spec["names"]["shortNames"] == ["zd"] and spec["names"]["plural"] == "zonedrains"
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    assert "zonedrains.azswitch.io.yaml" in (CRD_PATH.parent / "kustomization.yaml").read_text()


def test_schema_is_structural_and_every_field_is_documented() -> None:
    problems = []
    for path, node in walk(root(), "openAPIV3Schema"):
        if "type" not in node:
            problems.append(f"{path}: no type")
        if path != "openAPIV3Schema.metadata" and not str(node.get("description", "")).strip():
            problems.append(f"{path}: no description")
        # matchLabels is a map: additionalProperties with a schema, never together with properties.
        if "additionalProperties" in node and ("properties" in node or not path.endswith("matchLabels")):
            problems.append(f"{path}: additionalProperties outside a label map")
    assert not problems, "\n".join(problems)


def test_printer_columns() -> None:
    columns = {
        c["name"].upper(): c["jsonPath"] for c in crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns == {
        "ZONE": ".spec.zone",
        "PHASE": ".status.phase",
        "MATCHED": ".status.matchedGroups",
        "DRAINED": ".status.drainedGroups",
        "BLOCKED": ".status.blockedGroups",
        "EXPIRES": ".spec.expiresAt",
        "AGE": ".metadata.creationTimestamp",
    }


SPECS = [
    pytest.param({"zone": "az1.dc1"}, True, id="minimal"),
    pytest.param(
        {
            "zone": "az1.dc1",
            "selector": {"matchLabels": {"tier": "db"}},
            "namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
            "expiresAt": "2026-12-08T06:00:00Z",
            "comment": "storage pool alarm INC-4711",
        },
        True,
        id="full",
    ),
    pytest.param({}, False, id="no-zone"),
    pytest.param({"zone": "az 1"}, False, id="bad-zone"),
    pytest.param(
        {"zone": "az1.dc1", "selector": {"matchLabels": {"tier": "d b"}}}, False, id="bad-label-value"
    ),
    pytest.param(
        {"zone": "az1.dc1", "selector": {"matchExpressions": [{"key": "tier", "operator": "Near"}]}},
        False,
        id="bad-operator",
    ),
    pytest.param({"zone": "az1.dc1", "comment": "x" * 300}, False, id="long-comment"),
]


@pytest.mark.parametrize(("raw", "valid"), SPECS)
def test_apiserver_and_models_accept_the_same_drains(raw: dict[str, Any], valid: bool) -> None:
    errors = schema_errors(root()["properties"]["spec"], raw, "spec")
    assert (not errors) is valid, errors
    try:
        ZoneDrainSpec.model_validate(raw)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted is valid


def test_sample_drain_validates() -> None:
    sample = Path(__file__).resolve().parents[2] / "deploy" / "samples" / "zonedrain.yaml"
    (doc,) = [d for d in yaml.safe_load_all(sample.read_text()) if d]
    assert doc["kind"] == "ZoneDrain"
    assert not schema_errors(root()["properties"]["spec"], doc["spec"], "spec")
    ZoneDrainSpec.model_validate(doc["spec"])
