"""The local intent journal of ``azswitch apply``: one JSON line per status write, fsynced before it returns.

The operator's intent journal is ``status.operation``, written (and acknowledged) before each request. With no
cluster, the status lives here: ``LocalKube.patch_status`` appends the group's whole status after every
write and fsyncs it before the Reconciler goes on to send anything, so an apply killed at any point (Ctrl-C,
SIGKILL, a lost laptop) and run again with the same file finds the operation it journaled and resumes it by
observing the cloud — exactly as the operator does after a restart.

Records: ``{"key": "ns/name", "groupID", "service", "operationID", "status", "at"}``. On load, the last
record per key wins, if it is for the manifest's groupID (a record for another group under the same name is
ignored, with a warning). A line torn by a kill mid-write is skipped; the next append starts a fresh line.
An exclusive ``flock`` keeps two applies from sharing one journal.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from azswitch.breakglass.manifests import InputError


def default_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_STATE_HOME/azswitch/journal.jsonl``, else ``~/.local/state/azswitch/journal.jsonl``."""
    state = environ.get("XDG_STATE_HOME")
    base = Path(state) if state else Path(environ.get("HOME") or Path.home()) / ".local" / "state"
    return base / "azswitch" / "journal.jsonl"


class JournalFile:
    """The journal file, opened for appending and locked for the lifetime of one apply."""

    def __init__(self, path: Path, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self._warn = warn or (lambda message: None)
        self._file: IO[str] | None = None
        self.records: list[dict[str, Any]] = []

    def open(self) -> JournalFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise InputError(
                f"journal {self.path}: cannot open it ({exc.strerror or exc}); fix: pass --journal PATH in a "
                "writable directory"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise InputError(
                f"journal {self.path} is locked by another azswitch apply that is still running; fix: wait for "
                "it to finish (or stop it), or use another --journal for different groups"
            ) from None
        self._file = handle
        handle.seek(0)
        text = handle.read()
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                self._warn(f"journal {self.path}: line {number} is incomplete (a kill mid-write?); skipped")
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                self.records.append(record)
        if text and not text.endswith("\n"):
            # A torn last line: the next record must not be glued to it.
            handle.write("\n")
            self._sync()
        return self

    def last_status(self, key: str, group_id: str) -> dict[str, Any] | None:
        """The status last journaled for ``key``, if it was for ``group_id``."""
        for record in reversed(self.records):
            if record.get("key") != key:
                continue
            if record.get("groupID") != group_id:
                self._warn(
                    f"journal {self.path}: the last record for {key} is for cloud group {record.get('groupID')}, "
                    f"not {group_id}; ignored"
                )
                return None
            status = record.get("status")
            return dict(status) if isinstance(status, Mapping) else None
        return None

    def append(self, key: str, group_id: str, service: str, status: Mapping[str, Any]) -> None:
        """Write one record and make it durable (flush + fsync) before returning."""
        if self._file is None:
            raise RuntimeError("the journal is not open")
        operation = status.get("operation")
        if not isinstance(operation, Mapping):
            operation = status.get("lastOperation")
        record = {
            "key": key,
            "groupID": group_id,
            "service": service,
            "operationID": operation.get("id") if isinstance(operation, Mapping) else None,
            "status": dict(status),
            "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        self._file.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._sync()
        self.records.append(record)

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            handle, self._file = self._file, None
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
