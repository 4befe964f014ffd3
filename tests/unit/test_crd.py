"""The CRD is structural, documented, and says exactly what ``azswitch.models`` says.

Two descriptions of one API drift apart unless a test holds them together: this one walks the CRD's
openAPIV3Schema and the models' JSON schema side by side and compares, at every level, field names,
required sets, types, enums, patterns, lengths, minimums and (for spec) defaults — with ``{}`` defaults
expanded the way the apiserver expands them. A mismatch names its path (``spec.switchover.timeout``).

A few tables then check behaviour rather than shape: specs the apiserver would reject (judged here by a
small evaluator of the CRD schema) are rejected by the models too, with the two documented differences
(a zero timeout, and unknown fields, which the apiserver prunes and the operator refuses).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from azswitch.durations import DURATION_PATTERN
from azswitch.models import ReplicationGroupSpec, ReplicationGroupStatus

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "replicationgroups.azswitch.io.yaml"
Schema = dict[str, Any]


@functools.cache
def _parsed_crd() -> dict[str, Any]:
    loaded = yaml.safe_load(CRD_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def load_crd() -> dict[str, Any]:
    # A private copy each time: some tests mutate it to prove the comparison notices.
    return copy.deepcopy(_parsed_crd())


def root_schema(crd: dict[str, Any]) -> Schema:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert isinstance(schema, dict)
    return schema


# --- the comparison -----------------------------------------------------------------------------------------

COMPARED_KEYWORDS = ("pattern", "maxLength", "minLength", "maxItems", "minimum")


def resolve(node: Schema, defs: Schema) -> tuple[Schema, bool]:
    """Inline ``$ref``/``allOf`` and unwrap ``X | None``; returns the node and whether it is nullable."""
    node = dict(node)
    nullable = False
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        node = {**target, **node}
    if "allOf" in node and len(node["allOf"]) == 1:
        inner, inner_nullable = resolve(node.pop("allOf")[0], defs)
        node, nullable = {**inner, **node}, inner_nullable
    if "anyOf" in node:
        options = node.pop("anyOf")
        concrete = [option for option in options if option != {"type": "null"}]
        assert len(concrete) == 1, f"cannot compare a union of {options}"
        inner, _ = resolve(concrete[0], defs)
        node, nullable = {**inner, **node}, len(concrete) < len(options)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node, nullable


def effective_default(node: Schema) -> Any:
    """The default the apiserver applies: an object default is filled in with its properties' defaults."""
    if "default" not in node:
        return None
    default = copy.deepcopy(node["default"])
    if isinstance(default, dict) and node.get("type") == "object":
        for name, child in node.get("properties", {}).items():
            if name not in default and "default" in child:
                default[name] = effective_default(child)
    return default


def compare(crd: Schema, model: Schema, defs: Schema, path: str, *, defaults: bool) -> list[str]:
    model, nullable = resolve(model, defs)
    problems = []
    if crd.get("type") != model.get("type"):
        problems.append(
            f"{path}: type is {crd.get('type')!r} in the CRD but {model.get('type')!r} in the model"
        )
    if crd.get("nullable") and not nullable:
        problems.append(f"{path}: nullable in the CRD but not in the model")
    if set(crd.get("enum", [])) != set(model.get("enum", [])):
        problems.append(f"{path}: enum {crd.get('enum')} in the CRD but {model.get('enum')} in the model")
    for keyword in COMPARED_KEYWORDS:
        if crd.get(keyword) != model.get(keyword):
            problems.append(
                f"{path}: {keyword} {crd.get(keyword)!r} in the CRD, {model.get(keyword)!r} in the model"
            )
    if (crd.get("format") == "date-time") != (model.get("format") == "date-time"):
        problems.append(
            f"{path}: format {crd.get('format')!r} in the CRD, {model.get('format')!r} in the model"
        )
    if defaults:
        crd_default, model_default = effective_default(crd), model.get("default")
        if crd_default != model_default:
            problems.append(f"{path}: default {crd_default!r} in the CRD but {model_default!r} in the model")
    if crd.get("type") == "object" and model.get("type") == "object":
        crd_properties, model_properties = crd.get("properties", {}), model.get("properties", {})
        for name in sorted(set(crd_properties) ^ set(model_properties)):
            where = "CRD" if name in crd_properties else "model"
            problems.append(f"{path}.{name}: only in the {where}")
        if set(crd.get("required", [])) != set(model.get("required", [])):
            problems.append(
                f"{path}: required {sorted(crd.get('required', []))} in the CRD but "
                f"{sorted(model.get('required', []))} in the model"
            )
        for name in sorted(set(crd_properties) & set(model_properties)):
            problems += compare(
                crd_properties[name], model_properties[name], defs, f"{path}.{name}", defaults=defaults
            )
    if crd.get("type") == "array" and model.get("type") == "array":
        problems += compare(crd["items"], model["items"], defs, f"{path}[]", defaults=defaults)
    return problems


def differences(crd_node: Schema, model: type[BaseModel], path: str, *, defaults: bool) -> list[str]:
    schema = model.model_json_schema(by_alias=True)
    return compare(crd_node, schema, schema.get("$defs", {}), path, defaults=defaults)


@pytest.mark.parametrize(
    ("section", "model", "defaults"),
    [
        pytest.param("spec", ReplicationGroupSpec, True, id="spec"),
        pytest.param("status", ReplicationGroupStatus, False, id="status"),
    ],
)
def test_crd_and_models_agree(section: str, model: type[BaseModel], defaults: bool) -> None:
    problems = differences(root_schema(load_crd())["properties"][section], model, section, defaults=defaults)
    assert not problems, "CRD and models disagree:\n" + "\n".join(problems)


def spec_node(crd: dict[str, Any], dotted: str) -> Schema:
    node: Schema = root_schema(crd)["properties"]["spec"]
    for name in dotted.split("."):
        node = node["properties"][name]
    return node


MUTATIONS = [
    pytest.param(
        lambda crd: spec_node(crd, "switchover").pop("default"), "spec.switchover: default", id="default"
    ),
    pytest.param(
        lambda crd: spec_node(crd, "switchover.timeout").update(default="10m"),
        "spec.switchover.timeout: default",
        id="inner-default",
    ),
    pytest.param(
        lambda crd: spec_node(crd, "switchover.approval")["enum"].append("Never"),
        "spec.switchover.approval: enum",
        id="enum",
    ),
    pytest.param(
        lambda crd: spec_node(crd, "cloud")["required"].remove("region"),
        "spec.cloud: required",
        id="required",
    ),
    pytest.param(
        lambda crd: spec_node(crd, "cloud.projectID").update(pattern="^.*$"),
        "spec.cloud.projectID: pattern",
        id="pattern",
    ),
    pytest.param(
        lambda crd: spec_node(crd, "cloud")["properties"].pop("endpoint"),
        "spec.cloud.endpoint: only in the model",
        id="missing",
    ),
    pytest.param(lambda crd: spec_node(crd, "dryRun").update(type="string"), "spec.dryRun: type", id="type"),
]


@pytest.mark.parametrize(("mutate", "expected"), MUTATIONS)
def test_the_comparison_catches_drift(mutate: Any, expected: str) -> None:
    crd = load_crd()
    mutate(crd)
    problems = differences(
        root_schema(crd)["properties"]["spec"], ReplicationGroupSpec, "spec", defaults=True
    )
    assert any(problem.startswith(expected) for problem in problems), problems


def test_duration_pattern_is_shared() -> None:
    crd = load_crd()
    assert spec_node(crd, "switchover.timeout")["pattern"] == DURATION_PATTERN
    assert spec_node(crd, "switchover.minInterval")["pattern"] == DURATION_PATTERN


# --- structural and documented ------------------------------------------------------------------------------


def walk(node: Schema, path: str) -> list[tuple[str, Schema]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += walk(child, f"{path}.{name}")
    if "items" in node:
        found += walk(node["items"], f"{path}[]")
    return found


def test_schema_is_structural_and_every_field_is_documented() -> None:
    problems = []
    for path, node in walk(root_schema(load_crd()), "openAPIV3Schema"):
        if "type" not in node:
            problems.append(f"{path}: no type")
        # The apiserver forbids anything but the type on the root's metadata, a description included.
        if path == "openAPIV3Schema.metadata":
            if set(node) != {"type"}:
                problems.append(f"{path}: only 'type' is allowed here (the apiserver rejects more)")
        elif not str(node.get("description", "")).strip():
            problems.append(f"{path}: no description")
        for keyword in (
            "additionalProperties",
            "x-kubernetes-preserve-unknown-fields",
            "anyOf",
            "oneOf",
            "$ref",
        ):
            if keyword in node:
                problems.append(f"{path}: uses {keyword}")
        if node.get("type") == "object":
            missing = set(node.get("required", [])) - set(node.get("properties", {}))
            if missing and not path.endswith(".metadata"):
                problems.append(f"{path}: requires undeclared {sorted(missing)}")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{path}: array without items")
    assert not problems, "\n".join(problems)


def test_crd_identity() -> None:
    crd = load_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "replicationgroups.azswitch.io"
    spec = crd["spec"]
    assert (spec["group"], spec["scope"]) == ("azswitch.io", "Namespaced")
    assert spec["names"] == {
        "kind": "ReplicationGroup",
        "listKind": "ReplicationGroupList",
        "plural": "replicationgroups",
        "singular": "replicationgroup",
        "shortNames": ["rg"],
        "categories": ["azswitch"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = root_schema(load_crd())["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def printer_columns() -> dict[str, dict[str, Any]]:
    return {
        column["name"].upper(): column
        for column in load_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    }


@pytest.mark.parametrize(
    ("name", "json_path", "priority"),
    [
        pytest.param("DESIRED", ".spec.primaryAZ", 0, id="desired"),
        pytest.param("CURRENT", ".status.currentPrimaryAZ", 0, id="current"),
        pytest.param("REPLICATION", ".status.cloud.replicationStatus", 0, id="replication"),
        pytest.param("PHASE", ".status.phase", 0, id="phase"),
        pytest.param("READY", '.status.conditions[?(@.type=="Ready")].status', 0, id="ready"),
        pytest.param("AGE", ".metadata.creationTimestamp", 0, id="age"),
        pytest.param("OPERATION", ".status.operation.action", 1, id="operation-wide-only"),
    ],
)
def test_printer_columns(name: str, json_path: str, priority: int) -> None:
    column = printer_columns()[name]
    assert column["jsonPath"] == json_path
    assert column.get("priority", 0) == priority


def test_printer_columns_point_at_real_fields() -> None:
    schema = root_schema(load_crd())
    for name, column in printer_columns().items():
        path = re.sub(r"\[\?\(.*?\)\]", "[]", column["jsonPath"])
        if path.startswith(".metadata."):
            assert column["type"] == "date"
            continue
        node = schema
        for part in path.strip(".").split("."):
            array = part.endswith("[]")
            node = node["properties"][part.removesuffix("[]")]
            if array:
                node = node["items"]
        assert node["type"] == column["type"], f"column {name}: {column['jsonPath']} is {node['type']}"


# --- behaviour: what the apiserver rejects, the models reject -----------------------------------------------


def schema_errors(node: Schema, value: Any, path: str) -> list[str]:
    """A small evaluator of the CRD keywords used here (types, enum, pattern, lengths, required); unknown
    fields are pruned by the apiserver, so they are ignored, as it would."""
    kind = str(node.get("type"))
    checks = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
    }
    if not checks.get(kind, True):
        return [f"{path}: not a {kind}"]
    problems = []
    if "enum" in node and value not in node["enum"]:
        problems.append(f"{path}: not in enum")
    if isinstance(value, str):
        if "pattern" in node and not re.search(node["pattern"], value):
            problems.append(f"{path}: pattern")
        if len(value) > node.get("maxLength", len(value)):
            problems.append(f"{path}: maxLength")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            problems += schema_errors(node["items"], item, f"{path}[{index}]")
    if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        for key, item in value.items():
            problems += schema_errors(node["additionalProperties"], item, f"{path}.{key}")
    if isinstance(value, dict):
        problems += [f"{path}.{name}: required" for name in node.get("required", []) if name not in value]
        for name, child in node.get("properties", {}).items():
            if name in value:
                problems += schema_errors(child, value[name], f"{path}.{name}")
    return problems


def sample(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "groupID": "91085433-9499-4a68-b2c6-35072467ccd2",
        "primaryAZ": "az2.dc2",
        "cloud": {
            "region": "cn-north-4",
            "projectID": "0123456789abcdef0123456789abcdef",
            "endpoint": "https://evs.cn-north-4.example",
            "credentialsSecretRef": {"name": "evs-credentials"},
        },
        "switchover": {"approval": "Automatic", "timeout": "30m", "minInterval": "0s"},
        "failover": {"allowed": False, "autoReprotect": False},
        "dryRun": False,
        "suspend": False,
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        target = raw
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf)
        else:
            target[leaf] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        pytest.param(sample(), True, id="design-doc-example"),
        pytest.param(sample(cloud__endpoint=None, switchover=None, failover=None), True, id="minimal"),
        pytest.param(sample(switchover__timeout="1h30m"), True, id="timeout-1h30m"),
        pytest.param(sample(switchover__minInterval="1.5h"), True, id="min-interval-decimal"),
        pytest.param(sample(switchover__timeout="30"), False, id="timeout-without-unit"),
        pytest.param(sample(switchover__timeout="1d"), False, id="timeout-days"),
        pytest.param(sample(switchover__approval="manual"), False, id="approval-lower-case"),
        pytest.param(sample(groupID="g" * 129), False, id="group-id-too-long"),
        pytest.param(sample(groupID="_g"), False, id="group-id-leading-underscore"),
        pytest.param(sample(primaryAZ=""), False, id="primary-az-empty"),
        pytest.param(sample(primaryAZ="a" * 64), False, id="primary-az-too-long"),
        pytest.param(sample(cloud__region="cn_north_4"), False, id="region-underscore"),
        pytest.param(sample(cloud__region="r" * 65), False, id="region-too-long"),
        pytest.param(sample(cloud__projectID="a" * 65), False, id="project-id-too-long"),
        pytest.param(sample(cloud__endpoint="evs.example"), False, id="endpoint-without-scheme"),
        pytest.param(sample(cloud__endpoint="https://" + "e" * 2041), False, id="endpoint-too-long"),
        pytest.param(
            sample(cloud__credentialsSecretRef={"name": "a" * 254}), False, id="secret-name-too-long"
        ),
        pytest.param(
            sample(cloud__credentialsSecretRef={"name": "evs.credentials-1"}), True, id="secret-dotted"
        ),
        pytest.param(sample(cloud__credentialsSecretRef={}), False, id="secret-name-missing"),
        pytest.param(sample(cloud=None), False, id="cloud-missing"),
        pytest.param(sample(dryRun="true"), False, id="dry-run-string"),
    ],
)
def test_apiserver_and_models_accept_the_same_specs(raw: dict[str, Any], valid: bool) -> None:
    spec_schema = root_schema(load_crd())["properties"]["spec"]
    apiserver_problems = schema_errors(spec_schema, raw, "spec")
    assert (not apiserver_problems) == valid, apiserver_problems
    try:
        ReplicationGroupSpec.model_validate(raw)
    except ValidationError as exc:
        assert not valid, f"the CRD accepts it but the model says: {exc}"
    else:
        assert valid, "the model accepts what the CRD rejects"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(sample(switchover__timeout="0s"), id="zero-timeout"),
        pytest.param(sample(cloud__projectId="typo"), id="unknown-field"),
    ],
)
def test_documented_differences_the_operator_reports(raw: dict[str, Any]) -> None:
    spec_schema = root_schema(load_crd())["properties"]["spec"]
    assert schema_errors(spec_schema, raw, "spec") == []
    with pytest.raises(ValidationError):
        ReplicationGroupSpec.model_validate(raw)
