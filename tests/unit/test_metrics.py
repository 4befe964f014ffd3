"""The Prometheus metrics as a scraper sees them: the text exposition, both generated in-process and served
over HTTP, with exact values.

Every test builds its own ``Metrics`` (its own registry), so nothing leaks between tests or into
prometheus-client's global registry. The cloud hook is exercised through the real ``CloudSession`` with an
httpx mock transport, which is what proves that ``Metrics.cloud_request`` fits ``RequestHook``.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from azswitch.cloud.ratelimit import RateLimiter
from azswitch.cloud.retry import RetryPolicy
from azswitch.cloud.transport import Call, CloudSession, RequestHook
from azswitch.errors import CloudError
from azswitch.metrics import OPERATION_BUCKETS, PHASES, Metrics, MetricsServer

Labels = tuple[tuple[str, str], ...]


def scrape_text(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of a text exposition, keyed by (sample name, sorted labels)."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    return scrape_text(generate_latest(metrics.registry).decode("utf-8"))


def key(metric: str, /, **labels: str) -> tuple[str, Labels]:
    return (metric, tuple(sorted(labels.items())))


def series(samples: dict[tuple[str, Labels], float], name: str) -> dict[Labels, float]:
    """All samples of one name, keyed by labels."""
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def by_label(samples: dict[tuple[str, Labels], float], name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in series(samples, name).items()}


# --- cloud requests -----------------------------------------------------------------------------------------


def test_cloud_request_counts_by_operation_and_code() -> None:
    metrics = Metrics()
    metrics.cloud_request("show_group", 200, 0.02)
    metrics.cloud_request("show_group", 200, 0.04)
    metrics.cloud_request("show_group", 429, 0.01)
    metrics.cloud_request("reverse_group", None, 5.0)

    samples = scrape(metrics)
    assert samples[key("azswitch_cloud_requests_total", operation="show_group", code="200")] == 2
    assert samples[key("azswitch_cloud_requests_total", operation="show_group", code="429")] == 1
    # No HTTP response at all (connection refused, timeout): code "error", never a made-up number.
    assert samples[key("azswitch_cloud_requests_total", operation="reverse_group", code="error")] == 1
    latency = "azswitch_cloud_request_duration_seconds"
    assert samples[key(f"{latency}_count", operation="show_group")] == 3
    assert samples[key(f"{latency}_sum", operation="show_group")] == pytest.approx(0.07)
    assert samples[key(f"{latency}_bucket", operation="show_group", le="0.025")] == 2
    assert samples[key(f"{latency}_bucket", operation="reverse_group", le="5.0")] == 1
    assert samples[key(f"{latency}_bucket", operation="reverse_group", le="2.5")] == 0


async def test_cloud_request_is_the_cloud_sessions_request_hook() -> None:
    # The real CloudSession calls the hook once per attempt: a 503 and a refused connection are retried
    # (reads are), then a 200 ends the call.
    metrics = Metrics()
    hook: RequestHook = metrics.cloud_request
    responses: Iterator[int | None] = iter([503, None, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(responses)
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={"consistencygroup": {}})

    async def no_sleep(_: float) -> None:
        await asyncio.sleep(0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="https://evs.test") as http:
        session = CloudSession(
            http,
            auth=httpx.Auth(),
            retry=RetryPolicy(max_attempts=3, sleep=no_sleep),
            limiter=RateLimiter(1000, 1000),
            on_request=hook,
        )
        response = await session.send(Call("show_group", "GET", "/v3/p/os-vendor-consistencygroups/g"))
    assert response.status_code == 200

    codes = {
        dict(labels)["code"]: value
        for labels, value in series(scrape(metrics), "azswitch_cloud_requests_total").items()
        if dict(labels)["operation"] == "show_group"
    }
    assert codes == {"503": 1, "error": 1, "200": 1}


async def test_a_failed_call_is_still_counted() -> None:
    metrics = Metrics()

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda request: httpx.Response(400, json={"error_code": "EVS.0001"})),
        base_url="https://evs.test",
    ) as http:
        session = CloudSession(
            http,
            auth=httpx.Auth(),
            retry=RetryPolicy(max_attempts=1),
            limiter=RateLimiter(1000, 1000),
            on_request=metrics.cloud_request,
        )
        with pytest.raises(CloudError):
            await session.send(Call("reverse_group", "POST", "/v3/p/x/action", body={"os-reverse": {}}))
    assert scrape(metrics)[key("azswitch_cloud_requests_total", operation="reverse_group", code="400")] == 1


# --- operations ---------------------------------------------------------------------------------------------


def test_operation_finished_counts_results_and_observes_duration() -> None:
    metrics = Metrics()
    metrics.operation_finished("Switchover", "Succeeded", 45.0)
    metrics.operation_finished("Switchover", "Succeeded", 400.0)
    metrics.operation_finished("Switchover", "TimedOut", 1800.0)
    metrics.operation_finished("Failover", "Failed", 3000.0)

    samples = scrape(metrics)
    assert samples[key("azswitch_operations_total", action="Switchover", result="Succeeded")] == 2
    assert samples[key("azswitch_operations_total", action="Switchover", result="TimedOut")] == 1
    assert samples[key("azswitch_operations_total", action="Failover", result="Failed")] == 1
    buckets = {
        dict(labels)["le"]: value
        for labels, value in series(samples, "azswitch_operation_duration_seconds_bucket").items()
        if dict(labels)["action"] == "Switchover"
    }
    assert buckets["30.0"] == 0
    assert buckets["60.0"] == 1
    assert buckets["600.0"] == 2
    assert buckets["1800.0"] == 3
    assert buckets["+Inf"] == 3
    assert samples[key("azswitch_operation_duration_seconds_sum", action="Switchover")] == 2245.0


def test_operation_buckets_span_seconds_to_an_hour() -> None:
    assert OPERATION_BUCKETS[0] <= 1
    assert 3600 in OPERATION_BUCKETS
    assert list(OPERATION_BUCKETS) == sorted(OPERATION_BUCKETS)


def test_reconcile_errors_and_operations_in_flight() -> None:
    metrics = Metrics()
    samples = scrape(metrics)
    # Present from the start, so rate() and alerts have a series before the first error.
    assert samples[key("azswitch_reconcile_errors_total")] == 0
    assert samples[key("azswitch_operations_in_flight")] == 0

    metrics.reconcile_error()
    metrics.reconcile_error()
    metrics.operations_in_flight(3)
    metrics.operations_in_flight(2)
    samples = scrape(metrics)
    assert samples[key("azswitch_reconcile_errors_total")] == 2
    assert samples[key("azswitch_operations_in_flight")] == 2


# --- per-group state ----------------------------------------------------------------------------------------

Step = Callable[[Metrics], None]


def state(namespace: str, name: str, phase: str, reason: str | None, healthy: bool | None) -> Step:
    return lambda metrics: metrics.set_group_state(namespace, name, phase, reason, healthy)


def forget(namespace: str, name: str) -> Step:
    return lambda metrics: metrics.forget_group(namespace, name)


@pytest.mark.parametrize(
    ("steps", "phases", "blocked", "healthy"),
    [
        pytest.param([], {}, {}, {}, id="nothing-known-all-phases-zero"),
        pytest.param(
            [state("payments", "orders", "Ready", None, True)],
            {"Ready": 1},
            {},
            {("payments", "orders"): 1},
            id="one-ready-group",
        ),
        pytest.param(
            [
                state("payments", "orders", "Ready", None, True),
                state("payments", "orders", "SwitchingOver", None, True),
            ],
            {"SwitchingOver": 1},
            {},
            {("payments", "orders"): 1},
            id="phase-change-moves-the-count",
        ),
        pytest.param(
            [
                state("payments", "orders", "Blocked", "SwitchoverImpossible", False),
                state("payments", "ledger", "Blocked", "SwitchoverImpossible", False),
                state("shop", "carts", "AwaitingApproval", "AwaitingApproval", True),
            ],
            {"Blocked": 2, "AwaitingApproval": 1},
            {"SwitchoverImpossible": 2, "AwaitingApproval": 1},
            {("payments", "orders"): 0, ("payments", "ledger"): 0, ("shop", "carts"): 1},
            id="blocked-reasons-counted",
        ),
        pytest.param(
            [
                state("payments", "orders", "Blocked", "SwitchoverImpossible", False),
                state("payments", "orders", "Ready", None, True),
            ],
            {"Ready": 1},
            {"SwitchoverImpossible": 0},
            {("payments", "orders"): 1},
            id="unblocked-reason-drops-to-zero",
        ),
        pytest.param(
            [
                state("payments", "orders", "Ready", None, True),
                state("payments", "orders", "Unknown", None, None),
            ],
            {"Unknown": 1},
            {},
            {},
            id="unknown-health-removes-the-series",
        ),
        pytest.param(
            [
                state("payments", "orders", "Blocked", "InvalidPrimaryAZ", True),
                state("payments", "ledger", "Ready", None, True),
                forget("payments", "orders"),
            ],
            {"Ready": 1},
            {"InvalidPrimaryAZ": 0},
            {("payments", "ledger"): 1},
            id="forget-removes-a-deleted-group",
        ),
        pytest.param(
            [forget("payments", "never-seen")],
            {},
            {},
            {},
            id="forget-unknown-group-is-harmless",
        ),
        pytest.param(
            [state("a", "same-name", "Ready", None, True), state("b", "same-name", "Failed", None, True)],
            {"Ready": 1, "Failed": 1},
            {},
            {("a", "same-name"): 1, ("b", "same-name"): 1},
            id="namespaces-keep-groups-apart",
        ),
    ],
)
def test_group_state_gauges_are_recomputed_exactly(
    steps: list[Step],
    phases: dict[str, int],
    blocked: dict[str, int],
    healthy: dict[tuple[str, str], int],
) -> None:
    metrics = Metrics()
    for step in steps:
        step(metrics)

    samples = scrape(metrics)
    # Every phase of the CRD is exported, zero unless some group is in it.
    assert by_label(samples, "azswitch_groups", "phase") == {phase: phases.get(phase, 0) for phase in PHASES}
    assert by_label(samples, "azswitch_blocked_groups", "reason") == blocked
    health = {
        (dict(labels)["namespace"], dict(labels)["name"]): value
        for labels, value in series(samples, "azswitch_replication_healthy").items()
    }
    assert health == healthy


def test_phases_are_the_crds() -> None:
    # Every phase the CRD allows is exported (test_crd.py checks the CRD against models.Phase, whence PHASES).
    crd = yaml.safe_load(
        (Path(__file__).parents[2] / "crds" / "replicationgroups.azswitch.io.yaml").read_text()
    )
    (version,) = crd["spec"]["versions"]
    phase = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"]
    assert set(PHASES) == set(phase["enum"])


def test_registries_are_isolated() -> None:
    first, second = Metrics(), Metrics()
    first.reconcile_error()
    assert scrape(second)[key("azswitch_reconcile_errors_total")] == 0
    # Nothing lands in prometheus-client's process-wide default registry.
    assert not any(name.startswith("azswitch_") for name in REGISTRY._names_to_collectors)


def test_a_given_registry_is_used() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.reconcile_error()
    assert metrics.registry is registry
    assert registry.get_sample_value("azswitch_reconcile_errors_total") == 1


def test_exposition_has_help_and_types() -> None:
    text = generate_latest(Metrics().registry).decode()
    for name, kind in [
        ("azswitch_operations_total", "counter"),
        ("azswitch_operation_duration_seconds", "histogram"),
        ("azswitch_groups", "gauge"),
        ("azswitch_blocked_groups", "gauge"),
        ("azswitch_replication_healthy", "gauge"),
        ("azswitch_cloud_requests_total", "counter"),
        ("azswitch_cloud_request_duration_seconds", "histogram"),
        ("azswitch_reconcile_errors_total", "counter"),
        ("azswitch_operations_in_flight", "gauge"),
    ]:
        assert f"# TYPE {name} {kind}" in text
        assert f"# HELP {name} " in text


# --- the HTTP endpoint --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_on_free_port(metrics: Metrics) -> MetricsServer:
    # Port 0 means "disabled" in the API (as in AZSWITCH_METRICS_PORT), so pick a free port first; another
    # process may grab it in between, hence the retries.
    for _ in range(5):
        try:
            return metrics.start_server(free_port(), host="127.0.0.1")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no free port found")


def test_http_server_serves_metrics() -> None:
    metrics = Metrics()
    metrics.set_group_state("payments", "orders", "Ready", None, True)
    metrics.operation_finished("Switchover", "Succeeded", 12.0)
    server = start_on_free_port(metrics)
    try:
        assert server.enabled
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            samples = scrape_text(response.read().decode("utf-8"))
    finally:
        server.close()
    assert samples[key("azswitch_groups", phase="Ready")] == 1
    assert samples[key("azswitch_replication_healthy", namespace="payments", name="orders")] == 1
    assert samples[key("azswitch_operations_total", action="Switchover", result="Succeeded")] == 1


def test_http_server_stops_when_closed() -> None:
    server = start_on_free_port(Metrics())
    port = server.port
    server()  # the closer is callable
    server.close()  # and idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_port_zero_disables_the_server() -> None:
    server = Metrics().start_server(0)
    assert not server.enabled
    assert server.port is None
    server.close()
