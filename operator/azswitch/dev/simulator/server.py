"""The simulator over real HTTP (aiohttp), and ``run_forever`` behind ``azswitch simulate``.

The aiohttp handler is a thin adapter around ``Simulator.handle``; everything that matters happens there, so
the in-process transport and the server cannot drift apart. A dropped connection is a real one: the
transport is aborted and the client sees the socket close without a response.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from aiohttp import web

from azswitch.dev.simulator.core import Simulator
from azswitch.dev.simulator.seed import DEMO_SEED, Seed, SeedError, load_seed

AccessLog = Callable[[str], None]


def make_app(simulator: Simulator, access_log: AccessLog | None = None) -> web.Application:
    """An aiohttp application that serves every path through ``simulator``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await request.read()
        response = await simulator.handle(
            request.method,
            request.rel_url.raw_path,
            request.rel_url.raw_query_string,
            {name: value for name, value in request.headers.items()},
            body,
        )
        if access_log is not None:
            elapsed_ms = (time.perf_counter() - started) * 1000
            status = "DROP" if response.drop else str(response.status)
            access_log(f"{request.method} {request.rel_url.raw_path} {status} {elapsed_ms:.0f}ms")
        if response.drop:
            transport = request.transport
            if transport is not None:
                transport.abort()
            # Never written: the connection is already gone.
            return web.Response(status=500)
        return web.Response(status=response.status, headers=response.headers, body=response.body)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


class SimulatorServer:
    """Serve a simulator on ``host:port`` (port 0 picks a free one); use as ``async with``."""

    def __init__(
        self,
        simulator: Simulator,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: AccessLog | None = None,
    ) -> None:
        self.simulator = simulator
        self.host = host
        self.port = port
        self._access_log = access_log
        self._runner: web.AppRunner | None = None

    @property
    def runner(self) -> web.AppRunner | None:
        return self._runner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> int:
        runner = web.AppRunner(make_app(self.simulator, self._access_log), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    simulator: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: AccessLog | None = None,
) -> tuple[web.AppRunner, int]:
    """Start serving; return the runner (``await runner.cleanup()`` stops it) and the actual port."""
    server = SimulatorServer(simulator, host, port, access_log=access_log)
    actual_port = await server.start()
    assert server.runner is not None
    return server.runner, actual_port


def banner(seed: Seed, url: str) -> str:
    """What ``azswitch simulate`` prints at start: where to point the operator, and with what."""
    lines = [
        f"azswitch cloud simulator listening on {url}",
        f"  EVS endpoint:   {url}   (paths /v2/{{project_id}}/…)",
        f"  SDRS endpoint:  {url}   (paths /v1/{{project_id}}/server-groups, /v1/{{project_id}}/jobs)",
        f"  IAM endpoint:   {url}/v3   (POST /v3/auth/tokens)",
        f"  control API:    {url}/_sim/   (no auth; see GET {url}/_sim)",
    ]
    for cred in seed.credentials:
        lines.append(f"  AK/SK:          accessKey={cred.access_key} secretKey={cred.secret_key}")
    for user in seed.users:
        lines.append(f"  IAM user:       {user.name} / {user.password} (domain {user.domain})")
    names = {p.id: p.name for p in seed.projects}
    for pid in seed.project_ids():
        lines.append(f"  project:        {pid} ({names.get(pid, pid)})")
    for index, group in enumerate(seed.groups):
        lines.append(
            f"  group:          {group.group_id(index)} {group.name or '-'} project={group.project_id} "
            f"AZs={','.join(group.availability_zones)} primary={group.primary_az}"
        )
    for index, sdrs in enumerate(seed.sdrs_groups):
        lines.append(
            f"  SDRS group:     {sdrs.group_id(index)} {sdrs.name or '-'} project={sdrs.project_id} "
            f"source={sdrs.source_az} target={sdrs.target_az} station={sdrs.priority_station}"
        )
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def run_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    seed_path: str | Path | None = None,
    *,
    out: TextIO | None = None,
) -> int:
    """Serve until Ctrl-C or SIGTERM; return the process exit code (0 on a clean stop, 2 for a bad seed)."""
    stream = out or sys.stdout
    err = out or sys.stderr
    try:
        seed = load_seed(seed_path if seed_path is not None else DEMO_SEED)
    except SeedError as exc:
        print(f"error: {exc}", file=err, flush=True)
        return 2

    def log(line: str) -> None:
        print(line, file=stream, flush=True)

    async def main() -> int:
        simulator = Simulator(seed, rng_seed=None)
        server = SimulatorServer(simulator, host, port, access_log=log)
        try:
            await server.start()
        except OSError as exc:
            print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=err, flush=True)
            return 1
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        try:
            log(banner(seed, server.url))
            await stopping.wait()
            log("stopping")
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await server.stop()
        return 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
