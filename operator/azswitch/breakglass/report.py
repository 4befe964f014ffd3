"""How plan and apply show their results: a readable table (default), JSON or YAML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import yaml

from azswitch.breakglass.planning import Row


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = []
    for cells in [headers, *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return lines


def status_word(row: Row) -> str:
    if row.error:
        return "error"
    if row.resume:
        return "resume"
    if row.operation is not None:
        return "operator busy"
    if row.action == "None" and not row.blockers:
        return "in sync"
    if row.blockers and not row.waits_only:
        return "blocked"
    if row.blockers:
        return "waiting"
    return "will change"


def plan_text(rows: Sequence[Row]) -> str:
    cells = [
        [row.key, row.service, row.current or "?", row.desired, row.action, status_word(row)] for row in rows
    ]
    lines = []
    table = _table(["GROUP", "SERVICE", "CURRENT", "DESIRED", "ACTION", "STATUS"], cells)
    lines.append(table[0])
    for row, line in zip(rows, table[1:], strict=True):
        lines.append(line)
        if row.error:
            lines.append(f"    error: {row.error}")
        elif row.message and (row.action != "None" or row.resume):
            lines.append(f"    {row.message}")
        for blocker in row.blockers:
            lines.append(f"    {blocker['reason']} ({blocker['kind']}): {blocker['message']}")
    lines.append(plan_summary(rows))
    return "\n".join(lines) + "\n"


def plan_summary(rows: Sequence[Row]) -> str:
    words = [status_word(row) for row in rows]
    counts = {w: words.count(w) for w in dict.fromkeys(words)}
    parts = ", ".join(f"{n} {w}" for w, n in counts.items())
    return f"{len(rows)} group{'s' if len(rows) != 1 else ''}: {parts}"


def dump(data: Any, output: str, out: TextIO) -> None:
    if output == "json":
        out.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def write_plan(rows: Sequence[Row], output: str, out: TextIO) -> None:
    if output == "table":
        out.write(plan_text(rows))
    else:
        dump({"groups": [row.to_dict() for row in rows]}, output, out)
    out.flush()


@dataclass
class Outcome:
    """How one group ended in an apply."""

    key: str
    service: str
    source: str | None
    target: str | None
    result: str
    message: str
    operation: str | None = None

    @property
    def ok(self) -> bool:
        return self.result in ("Succeeded", "InSync")

    def to_dict(self) -> dict[str, Any]:
        namespace, _, name = self.key.partition("/")
        return {
            "namespace": namespace,
            "name": name,
            "service": self.service,
            "from": self.source,
            "to": self.target,
            "result": self.result,
            "operation": self.operation,
            "message": self.message,
        }


def write_summary(outcomes: Sequence[Outcome], output: str, out: TextIO) -> None:
    if output != "table":
        dump({"groups": [o.to_dict() for o in outcomes]}, output, out)
        out.flush()
        return
    cells = [
        [
            o.key,
            o.service,
            f"{o.source or '?'} → {o.target or '?'}",
            o.result,
            o.operation or "-",
        ]
        for o in outcomes
    ]
    table = _table(["GROUP", "SERVICE", "MOVE", "RESULT", "OPERATION"], cells)
    lines = [table[0]]
    for outcome, line in zip(outcomes, table[1:], strict=True):
        lines.append(line)
        if outcome.message:
            lines.append(f"    {outcome.message}")
    results = [o.result for o in outcomes]
    counts = {r: results.count(r) for r in dict.fromkeys(results)}
    lines.append(
        f"{len(outcomes)} group{'s' if len(outcomes) != 1 else ''}: "
        + ", ".join(f"{n} {r}" for r, n in counts.items())
    )
    out.write("\n".join(lines) + "\n")
    out.flush()
