"""The ``azswitch`` command: ``run`` the operator, ``simulate`` the cloud, manage a local ``control-plane``,
run the ``demo``; ``plan`` and ``apply`` for when the cluster is down (break-glass).

Each subcommand validates its input first and fails with one line that says what to fix, and exit code 2
for bad usage or configuration (1 for a runtime failure).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from azswitch.errors import ConfigError

logger = logging.getLogger("azswitch.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azswitch", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator against the current Kubernetes context")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], metavar="NS", help="watch NS (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (default)")
    run.add_argument(
        "--standalone",
        action="store_true",
        help="accepted for compatibility: kopf peering is never used (see --leader-elect for two replicas)",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="act only while holding the leader Lease, for two or more replicas (overrides "
        "AZSWITCH_LEADER_ELECT; default off)",
    )
    run.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (overrides AZSWITCH_LEADER_ELECTION_NAMESPACE; default: POD_NAMESPACE, "
        "else the pod's service account namespace)",
    )
    run.add_argument(
        "--leader-election-id",
        metavar="NAME",
        help="name of the Lease (overrides AZSWITCH_LEADER_ELECTION_ID; default azswitch-leader)",
    )
    run.add_argument(
        "--liveness", metavar="URL", help="serve kopf's health endpoint, e.g. http://0.0.0.0:8081/healthz"
    )
    run.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)"
    )
    run.add_argument("--log-format", choices=["plain", "json"], help="overrides AZSWITCH_LOG_FORMAT")

    sim = sub.add_parser("simulate", help="serve a fake cloud API on loopback for tests and demos")
    sim.add_argument("--port", type=int, default=8780, help="TCP port (0 picks a free one; default 8780)")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    sim.add_argument("--seed", type=Path, help="YAML/JSON seed file (default: the built-in demo seed)")

    cp = sub.add_parser("control-plane", help="a real kube-apiserver + etcd on loopback (up|down|status|env)")
    cp.add_argument("action", choices=["up", "down", "status", "env"])
    cp.add_argument("--state-dir", type=Path, help="where pids, certs and the kubeconfig live")

    demo = sub.add_parser(
        "demo", help="the whole product on this machine: control plane, simulator, operator"
    )
    demo.add_argument(
        "--once", action="store_true", help="run the scenario non-interactively, stop, exit 0 on success"
    )

    plan = sub.add_parser(
        "plan",
        help="break-glass: show what the operator would do with each group (reads only)",
        description="Read each group from the cloud and plan it with the operator's own planner. Never calls "
        "a mutating API. Exit code: 0 nothing to do, 2 changes planned, 1 an error.",
    )
    _breakglass_arguments(plan)
    apply = sub.add_parser(
        "apply",
        help="break-glass: make the cloud match the manifests without the operator",
        description="Carry out the plan with the operator's own operation lifecycle; the intent journal is a "
        "local file, written and fsynced before each request, so an interrupted apply rerun with the same "
        "--journal resumes by observing, never by re-sending. Confirming interactively approves the groups "
        "with spec.switchover.approval: Manual (the confirmation is the person's decision); with --yes they "
        "need --approve. Refuses while an operator leads unless --force. Exit code: 0 when every planned "
        "change was made (or none was needed), 1 otherwise, 130 when interrupted.",
    )
    _breakglass_arguments(apply)
    apply.add_argument(
        "--journal",
        type=Path,
        metavar="PATH",
        help="the intent journal (default $XDG_STATE_HOME/azswitch/journal.jsonl, else "
        "~/.local/state/azswitch/journal.jsonl); rerun with the same one to resume",
    )
    apply.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    apply.add_argument(
        "--max-concurrent", type=_positive_int, metavar="N", help="operations in flight at once (default 10)"
    )
    apply.add_argument(
        "--rate-limit",
        type=_positive_float,
        metavar="R",
        help="cloud requests per second per endpoint and project (default 10)",
    )
    apply.add_argument(
        "--timeout", type=_duration, default="1h", metavar="DURATION", help="for the whole run (default 1h)"
    )
    apply.add_argument(
        "--force",
        action="store_true",
        help="act even while an operator leads: each group is annotated azswitch.io/hold (the operator "
        "then makes no cloud call for it) and the annotation is removed when done",
    )
    apply.add_argument(
        "--retry",
        action="store_true",
        help="send again for groups whose last journaled operation failed or timed out",
    )
    apply.add_argument(
        "--leader-election-namespace",
        default="azswitch-system",
        metavar="NS",
        help="namespace of the operator's leader Lease (default azswitch-system)",
    )
    apply.add_argument(
        "--leader-election-id",
        default="azswitch-leader",
        metavar="NAME",
        help="name of the operator's leader Lease (default azswitch-leader)",
    )
    return parser


def _breakglass_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="NAMESPACE/NAME",
        help="ReplicationGroups in the current cluster (instead of -f)",
    )
    parser.add_argument(
        "--filename",
        "-f",
        action="append",
        default=[],
        metavar="FILE",
        help="ReplicationGroup manifests (multi-document YAML, a directory, - for stdin; repeatable)",
    )
    parser.add_argument(
        "--all-namespaces", "-A", action="store_true", help="every ReplicationGroup in the cluster"
    )
    parser.add_argument(
        "--namespace", "-n", metavar="NS", help="namespace of manifests that name none (default: default)"
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)"
    )
    parser.add_argument(
        "--credentials",
        metavar="FILE",
        help="AK/SK: the Secret's YAML, or AZSWITCH_ACCESS_KEY=... / AZSWITCH_SECRET_KEY=... lines (default: "
        "the Secret each manifest names when the cluster is reachable, else $AZSWITCH_ACCESS_KEY/"
        "$AZSWITCH_SECRET_KEY)",
    )
    parser.add_argument("--output", "-o", choices=["table", "json", "yaml"], default="table")
    parser.add_argument(
        "--approve", action="store_true", help="approve groups with spec.switchover.approval: Manual"
    )
    parser.add_argument(
        "--allow-failover",
        action="store_true",
        help="allow a failover where the cloud reports the primary AZ faulty (as spec.failover.allowed)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def _duration(text: str) -> Any:
    from azswitch.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value.total_seconds() > 0:
        raise argparse.ArgumentTypeError("must be greater than 0s")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("plan", "apply"):
        return _breakglass(args)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "simulate":
            simulator = _dev_tooling("simulator")
            return int(simulator.run_forever(host=args.host, port=args.port, seed_path=args.seed))
        if args.command == "control-plane":
            cp_args = [args.action] + (["--state-dir", str(args.state_dir)] if args.state_dir else [])
            return int(_dev_tooling("controlplane").main(cp_args))
        if args.command == "demo":
            return int(_dev_tooling("demo").main(once=args.once))
    except ConfigError as exc:
        print(f"azswitch: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


def _dev_tooling(name: str) -> Any:
    """A module of ``azswitch.dev``, imported only for the command that needs it (``azswitch run`` never
    does; the container image leaves the package out)."""
    try:
        return importlib.import_module(f"azswitch.dev.{name}")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("azswitch.dev"):
            raise
        raise ConfigError(
            f"this installation has no development tooling ({exc.name}); fix: run this command from a source "
            "checkout (`make setup`), not from the operator's container image"
        ) from None


def _breakglass(args: argparse.Namespace) -> int:
    """``plan`` and ``apply``: input errors exit 1 (2 is plan's "changes planned")."""
    import os

    from azswitch.breakglass.applying import ApplyOptions
    from azswitch.breakglass.commands import run_apply, run_plan
    from azswitch.breakglass.inputs import Options

    logging.basicConfig(level=logging.WARNING, format="azswitch: %(levelname)s %(name)s: %(message)s")
    common: dict[str, Any] = {
        "files": args.filename,
        "targets": args.targets,
        "all_namespaces": args.all_namespaces,
        "namespace": args.namespace,
        "kubeconfig": args.kubeconfig,
        "credentials": args.credentials,
        "output": args.output,
        "approve": args.approve,
        "allow_failover": args.allow_failover,
    }
    try:
        if args.command == "plan":
            return asyncio.run(run_plan(Options(**common), os.environ, sys.stdin, sys.stdout, sys.stderr))
        options = ApplyOptions(
            **common,
            journal=args.journal,
            yes=args.yes,
            max_concurrent=args.max_concurrent,
            rate_limit=args.rate_limit,
            timeout=args.timeout,
            force=args.force,
            retry=args.retry,
            lease_namespace=args.leader_election_namespace,
            lease_name=args.leader_election_id,
        )
        return asyncio.run(run_apply(options, os.environ, sys.stdin, sys.stdout, sys.stderr))
    except ConfigError as exc:
        print(f"azswitch {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"azswitch {args.command}: interrupted", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    import os

    from azswitch.handlers import run_operator
    from azswitch.leader import LeaderElection
    from azswitch.logs import setup_logging
    from azswitch.runtime import Runtime, load_kube_client
    from azswitch.settings import load_settings

    overrides: dict[str, Any] = {"log_format": args.log_format} if args.log_format else {}
    for field in ("leader_elect", "leader_election_namespace", "leader_election_id"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    settings = load_settings(**overrides)
    # Resolved before anything touches the cluster: a missing namespace is a start-up error, not a crash.
    election = LeaderElection.from_settings(settings, os.environ) if settings.leader_elect else None
    setup_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings, load_kube_client(args.kubeconfig), election=election)
    namespaces: list[str] = args.namespace
    logger.info("starting azswitch: watching %s", ", ".join(namespaces) if namespaces else "all namespaces")
    if election is not None:
        logger.info(
            "leader election on Lease %s as %s (lease %ds, renew deadline %gs, retry %gs)",
            election.lease,
            election.identity,
            election.lease_duration,
            election.renew_deadline,
            election.retry_period,
        )
    asyncio.run(run_operator(runtime, namespaces=namespaces, liveness=args.liveness))
    # A replica that lost the Lease exits non-zero, like controller-runtime's managers: the pod restarts
    # as a fresh standby instead of living on with state it may no longer trust.
    return 1 if runtime.lost_leadership else 0
