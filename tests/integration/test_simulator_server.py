"""Serving the simulator: ``serve`` on port 0, the access log, and ``run_forever`` (``azswitch simulate``).

``run_forever`` is exercised once in a child process, because what matters is process behaviour: it prints
where to connect, logs one line per request, and exits 0 on SIGTERM or Ctrl-C (SIGINT).
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import httpx
import pytest

from azswitch.dev.simulator import DEMO_SEED, Simulator, run_forever, serve
from azswitch.dev.simulator.server import SimulatorServer

OPERATOR_ROOT = Path(__file__).resolve().parents[2] / "operator"
DEMO_GROUP = "91085433-9499-4a68-b2c6-35072467ccd2"
DEMO_PROJECT = "0123456789abcdef0123456789abcdef"


async def test_serve_picks_free_ports_and_logs_each_request_including_drops() -> None:
    lines: list[str] = []
    sim = Simulator(DEMO_SEED)
    first, first_port = await serve(sim, access_log=lines.append)
    second, second_port = await serve(Simulator())
    try:
        assert first_port != second_port
        sim.set_faults({"drop": {"count": 1, "when": "before"}, "match": {"pathContains": "/volumes/"}})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{first_port}", trust_env=False) as client:
            assert (await client.get("/_sim")).json()["groups"][0]["id"] == DEMO_GROUP
            assert (await client.get(f"/v2/{DEMO_PROJECT}/os-vendor-replications")).status_code == 401
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(f"/v2/{DEMO_PROJECT}/volumes/x")
    finally:
        await first.cleanup()
        await second.cleanup()
    assert [line.split()[:3] for line in lines] == [
        ["GET", "/_sim", "200"],
        ["GET", f"/v2/{DEMO_PROJECT}/os-vendor-replications", "401"],
        ["GET", f"/v2/{DEMO_PROJECT}/volumes/x", "DROP"],
    ]
    assert all(line.endswith("ms") for line in lines)


async def test_server_context_manager_stops_listening() -> None:
    async with SimulatorServer(Simulator()) as server:
        url = server.url
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"{url}/_sim/clock")).status_code == 200
    async with httpx.AsyncClient(trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/_sim/clock")


async def test_run_forever_in_a_child_process_exits_0_on_sigterm() -> None:
    banner, rest = await serve_then_signal(signal.SIGTERM)
    for expected in ("AKEXAMPLE0000000000", "SKEXAMPLE", DEMO_GROUP, "demo / demo-password", "/_sim/"):
        assert expected in banner
    assert "stopping" in rest
    assert "Traceback" not in rest


class _Output(io.StringIO):
    """run_forever's output, with an event set once the banner is complete (signal handlers are in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.ready = threading.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "Press Ctrl-C to stop." in text:
            self.ready.set()
        return written


def test_run_forever_stops_cleanly_on_ctrl_c() -> None:
    # In-process, so that a second child process does not double this file's run time; the main thread
    # runs the server (signal handlers live there) while a helper thread plays the user.
    out = _Output()

    def user() -> None:
        try:
            if out.ready.wait(timeout=10):
                url = out.getvalue().splitlines()[0].rsplit(" ", 1)[-1]
                httpx.get(f"{url}/_sim/clock", trust_env=False)
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    helper = threading.Thread(target=user)
    helper.start()
    try:
        assert run_forever("127.0.0.1", 0, None, out=out) == 0
    finally:
        helper.join()
    assert "\nGET /_sim/clock 200 " in out.getvalue()
    assert out.getvalue().rstrip().endswith("stopping")


async def serve_then_signal(signum: int) -> tuple[str, str]:
    """Start ``run_forever`` in a child, make one request, send ``signum``; return (banner, later output)."""
    env = {**os.environ, "PYTHONPATH": str(OPERATOR_ROOT)}
    code = "import sys; from azswitch.dev.simulator import run_forever; sys.exit(run_forever('127.0.0.1', 0, None))"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        while not banner or banner[-1] != "Press Ctrl-C to stop.":
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=15)
            assert line, "the simulator exited early:\n" + "\n".join(banner)
            banner.append(line.decode().rstrip("\n"))
        url = banner[0].rsplit(" ", 1)[-1]
        path = f"/v2/{DEMO_PROJECT}/os-vendor-replication-consistency-groups"
        async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
            assert (await client.get(path)).status_code == 401
        log_line = (await asyncio.wait_for(proc.stdout.readline(), timeout=5)).decode()
        assert log_line.startswith(f"GET {path} 401 ")

        proc.send_signal(signum)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
        return "\n".join(banner), (await proc.stdout.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_run_forever_rejects_a_bad_seed_with_exit_code_2(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text("groups:\n  - {projectID: p, availabilityZones: [a, b], primaryAZ: c}\n")
    out = io.StringIO()
    assert run_forever("127.0.0.1", 0, seed, out=out) == 2
    assert "groups[0]" in out.getvalue() and "primaryAZ 'c'" in out.getvalue()


def test_run_forever_reports_a_busy_port_with_exit_code_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = io.StringIO()
        assert run_forever("127.0.0.1", busy.getsockname()[1], None, out=out) == 1
    assert "cannot listen" in out.getvalue()
