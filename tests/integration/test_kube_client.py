"""The operator's Kubernetes calls against an API server that accepts connections and never answers.

The official client has no timeout of its own, so such a call used to block its worker thread, and the
reconcile of that resource, forever; at shutdown the event loop then waited on that thread (this hung the
kmock suite once in ~15 runs). Every call must instead fail within ``AZSWITCH_KUBE_TIMEOUT`` as a
``KubeUnavailable``, which the reconciler retries; an event is dropped with a warning. ``asyncio.wait_for``
guards each test: without the timeout the call would still be waiting when the guard fires, and the test
fails (the server hangs up later, so even that failure cannot hang the suite).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import kubernetes.client
import pytest

from azswitch.kube import KubeUnavailable, OfficialClientKube

TIMEOUT = 0.5  # the timeout under test
GUARD = 5.0  # a call still waiting by now would have waited forever (read_secret retries 3 times)
HANG_UP = 10.0  # the server then closes the connection, so that a failing test still ends


@pytest.fixture
def silent_apiserver() -> Iterator[str]:
    """A TCP server that accepts every connection, never answers, and hangs up after ``HANG_UP`` s."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    accepted: list[tuple[float, socket.socket]] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
                accepted.append((time.monotonic(), connection))
            except TimeoutError:
                pass
            while accepted and time.monotonic() - accepted[0][0] > HANG_UP:
                accepted.pop(0)[1].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for _, connection in accepted:
            connection.close()
        listener.close()


def kube_for(url: str) -> OfficialClientKube:
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    return OfficialClientKube(kubernetes.client.ApiClient(configuration), timeout=TIMEOUT)


async def test_a_status_write_the_apiserver_never_answers_fails_as_unavailable(silent_apiserver: str) -> None:
    kube = kube_for(silent_apiserver)
    with pytest.raises(KubeUnavailable, match="writing the status of payments/orders"):
        await asyncio.wait_for(kube.patch_status("payments", "orders", "7", {"phase": "Ready"}), GUARD)


async def test_a_secret_read_the_apiserver_never_answers_fails_as_unavailable(silent_apiserver: str) -> None:
    kube = kube_for(silent_apiserver)
    with pytest.raises(KubeUnavailable, match="reading Secret payments/evs"):
        await asyncio.wait_for(kube.read_secret("payments", "evs"), GUARD)


async def test_an_event_the_apiserver_never_answers_is_dropped_with_a_warning(
    silent_apiserver: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="azswitch")
    kube = kube_for(silent_apiserver)
    body: dict[str, Any] = {"metadata": {"namespace": "payments", "name": "orders", "uid": "u-1"}}
    await asyncio.wait_for(kube.post_event(body, "Normal", "SwitchoverStarted", "op-1"), GUARD)
    assert "could not post event SwitchoverStarted" in caplog.text
