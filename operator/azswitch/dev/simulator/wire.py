"""What the simulator's request handler and its adapters (the aiohttp server, the httpx transport) share.

It exists so that neither adapter imports the core and the core imports no adapter: ``SimResponse`` is what a
handler returns, ``RequestHandler`` is what an adapter calls. A caller that wants the simulator in-process
builds the adapter itself — ``SimulatorTransport(Simulator(seed))`` — so there is no import circle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SimResponse:
    """A response, or (``drop=True``) the instruction to close the connection without one."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class RequestHandler(Protocol):
    """One HTTP request in, one response (or a dropped connection) out; ``Simulator`` is one."""

    async def handle(
        self, method: str, raw_path: str, raw_query: str, headers: Mapping[str, str], body: bytes
    ) -> SimResponse: ...
