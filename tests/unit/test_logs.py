"""Log lines carry the resource and operation as fields, in both formats, and JSON lines are valid JSON."""

from __future__ import annotations

import json
import logging

import pytest

from azswitch.logs import JsonFormatter, PlainFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord(
        "azswitch.reconcile", logging.INFO, __file__, 1, "SwitchoverStarted: %s", ("x",), None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_namespace_name_and_operation() -> None:
    line = JsonFormatter().format(_record(rg_namespace="payments", rg_name="orders", operation_id="op-1"))
    entry = json.loads(line)
    assert entry["message"] == "SwitchoverStarted: x"
    assert (entry["namespace"], entry["name"], entry["operation"]) == ("payments", "orders", "op-1")
    assert entry["level"] == "INFO"


@pytest.mark.parametrize(
    ("extra", "suffix"),
    [
        pytest.param(
            {"rg_namespace": "payments", "rg_name": "orders"},
            "[namespace=payments name=orders]",
            id="resource",
        ),
        pytest.param({}, "SwitchoverStarted: x", id="no-context"),
    ],
)
def test_plain_lines_end_with_the_context(extra: dict[str, object], suffix: str) -> None:
    assert PlainFormatter().format(_record(**extra)).endswith(suffix)
