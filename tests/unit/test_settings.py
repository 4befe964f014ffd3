"""Settings are validated at start-up with errors that name the variable, and endpoints obey the transport
rules (https always verified; plain http only to loopback unless explicitly allowed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from azswitch.errors import ConfigError
from azswitch.settings import load_settings, resolve_endpoint


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        pytest.param({"AZSWITCH_POLL_INTERVAL": "0"}, "AZSWITCH_POLL_INTERVAL", id="zero-poll"),
        pytest.param({"AZSWITCH_POLL_INTERVAL": "soon"}, "AZSWITCH_POLL_INTERVAL", id="not-a-number"),
        pytest.param(
            {"AZSWITCH_MAX_CONCURRENT_OPERATIONS": "0"}, "AZSWITCH_MAX_CONCURRENT_OPERATIONS", id="cap-0"
        ),
        pytest.param({"AZSWITCH_LOG_FORMAT": "xml"}, "AZSWITCH_LOG_FORMAT", id="log-format"),
        pytest.param({"AZSWITCH_LOG_LEVEL": "LOUD"}, "AZSWITCH_LOG_LEVEL", id="log-level"),
        pytest.param({"AZSWITCH_METRICS_PORT": "70000"}, "AZSWITCH_METRICS_PORT", id="port-range"),
        pytest.param(
            {"AZSWITCH_ALLOW_INSECURE_ENDPOINTS": "perhaps"}, "AZSWITCH_ALLOW_INSECURE_ENDPOINTS", id="bool"
        ),
        pytest.param(
            {"AZSWITCH_POLL_INTERVAL": "5", "AZSWITCH_POLL_MAX_INTERVAL": "1"},
            "poll_max_interval must be >= poll_interval",
            id="poll-bounds",
        ),
    ],
)
def test_bad_settings_name_the_variable(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    assert needle in str(info.value)


def test_defaults_and_overrides() -> None:
    settings = load_settings({"AZSWITCH_RESYNC_INTERVAL": "30", "UNRELATED": "x"})
    assert settings.resync_interval == 30
    assert settings.max_concurrent_operations == 10
    assert settings.poll_max_interval <= 1.0  # the B1 latency target depends on it


@pytest.mark.parametrize(
    ("service", "endpoint", "expected"),
    [
        pytest.param("EVS", None, "https://evs.cn-north-4.myhuaweicloud.com", id="evs-template"),
        pytest.param("SDRS", None, "https://sdrs.cn-north-4.myhuaweicloud.com", id="sdrs-template"),
        pytest.param("SDRS", "https://sdrs.example.com", "https://sdrs.example.com", id="sdrs-override"),
    ],
)
def test_endpoint_per_service(service: str, endpoint: str | None, expected: str) -> None:
    assert resolve_endpoint(load_settings({}), "cn-north-4", endpoint, service) == expected


@pytest.mark.parametrize(
    ("endpoint", "allow_insecure", "expected"),
    [
        pytest.param(None, False, "https://evs.cn-north-4.myhuaweicloud.com", id="derived-from-region"),
        pytest.param("https://evs.example.com/", False, "https://evs.example.com", id="https"),
        pytest.param("http://127.0.0.1:8780", False, "http://127.0.0.1:8780", id="http-loopback"),
        pytest.param("http://localhost:8780", False, "http://localhost:8780", id="http-localhost"),
        pytest.param("http://[::1]:8780", False, "http://[::1]:8780", id="http-ipv6-loopback"),
        pytest.param("http://evs.internal:80", True, "http://evs.internal:80", id="http-allowed-explicitly"),
    ],
)
def test_allowed_endpoints(endpoint: str | None, allow_insecure: bool, expected: str) -> None:
    settings = load_settings({}, allow_insecure_endpoints=allow_insecure)
    assert resolve_endpoint(settings, "cn-north-4", endpoint) == expected


@pytest.mark.parametrize(
    ("endpoint", "needle"),
    [
        pytest.param("http://evs.example.com", "AZSWITCH_ALLOW_INSECURE_ENDPOINTS", id="http-remote"),
        pytest.param("ftp://evs.example.com", "not an http(s) URL", id="ftp"),
        pytest.param("evs.example.com", "not an http(s) URL", id="no-scheme"),
        pytest.param("https://evs.example.com/v2", "drop the path", id="path"),
        pytest.param("https://evs.example.com:abc", "does not parse", id="bad-port"),
        pytest.param("https://admin:hunter2@evs.example.com", "user info", id="userinfo"),
    ],
)
def test_refused_endpoints_say_why(endpoint: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_endpoint(load_settings({}), "cn-north-4", endpoint)
    assert needle in str(info.value)
    assert "spec.cloud.endpoint" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_azswitch_run_refuses_bad_settings_before_touching_the_cluster() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "azswitch", "run"],
        env={"AZSWITCH_POLL_INTERVAL": "-1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "AZSWITCH_POLL_INTERVAL" in result.stderr
