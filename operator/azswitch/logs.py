"""Log set-up: plain text for people, JSON lines for log pipelines.

Every line about a resource carries its namespace, name and (when one runs) operation id as structured
fields, passed through ``extra=`` by the code that logs. Secrets never reach a log call in the first place;
this module adds no redaction magic that could give a false sense of safety.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from azswitch.settings import LogFormat

#: ``extra=`` keys copied into structured output when present, and the names they are shown under.
#: (``name`` itself is reserved by ``logging.LogRecord``, hence the prefixes.)
CONTEXT_FIELDS = {"rg_namespace": "namespace", "rg_name": "name", "operation_id": "operation"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attribute, field in CONTEXT_FIELDS.items():
            value = getattr(record, attribute, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(
            f"{field}={getattr(record, attribute)}"
            for attribute, field in CONTEXT_FIELDS.items()
            if getattr(record, attribute, None)
        )
        return f"{line} [{context}]" if context else line


def setup_logging(level: str, fmt: LogFormat) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt is LogFormat.JSON else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The HTTP libraries log every request at INFO/DEBUG; our cloud client logs what matters.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
