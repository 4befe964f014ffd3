"""The dependency direction of design.md §1, enforced by reading every module's imports with ``ast``.

``handlers → reconcile → {plan, status, cloud}``: the pure layers must stay importable (and testable)
without kopf, an HTTP client or a Kubernetes client; the cloud layer must not know about kopf or the
reconciler; the simulator must not share code with the cloud client, so that a misunderstanding of the
API cannot hide on both sides. Every import counts, including ones inside functions and ``TYPE_CHECKING``
blocks. Modules that do not exist yet are skipped.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parents[2] / "operator"
PACKAGE = SOURCE_ROOT / "azswitch"

PURE = ("plan", "status", "models", "observation", "errors", "signing", "durations")
IO_LIBRARIES = ("kopf", "httpx", "kubernetes", "aiohttp")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.cache
def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(source: str, module: str, *, is_package: bool) -> set[str]:
    """Every module name ``source`` may import: ``import a.b`` gives a.b; ``from a import b`` gives a and
    a.b (b may be a submodule); relative imports are resolved against ``module``."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


@functools.cache
def direct_imports(module: str) -> frozenset[str]:
    path = all_modules()[module]
    return frozenset(imports_of(path.read_text(), module, is_package=path.name == "__init__.py"))


def matches(name: str, forbidden: str) -> bool:
    return name == forbidden or name.startswith(forbidden + ".")


def loaded_project_modules(name: str) -> list[str]:
    """What importing ``name`` executes inside the project: the module and every parent package."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [prefix for prefix in prefixes if prefix in all_modules()]


def transitive_imports(module: str) -> dict[str, str]:
    """Every name imported, directly or through project modules, mapped to the project module importing it."""
    seen: dict[str, str] = {}
    stack = loaded_project_modules(module)
    visited: set[str] = set()
    while stack:
        current = stack.pop()
        if current in visited:
            continue
        visited.add(current)
        for name in direct_imports(current):
            seen.setdefault(name, current)
            stack.extend(loaded_project_modules(name))
    return seen


def existing(names: tuple[str, ...]) -> list[str]:
    return [f"azswitch.{name}" for name in names if f"azswitch.{name}" in all_modules()]


def modules_under(package: str) -> list[str]:
    return [name for name in all_modules() if matches(name, package)]


# --- the import parser itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        pytest.param("import kopf", "azswitch.plan", False, {"kopf"}, id="plain-import"),
        pytest.param("import httpx._client as c", "azswitch.plan", False, {"httpx._client"}, id="dotted-as"),
        pytest.param(
            "from . import reconcile",
            "azswitch.cloud",
            True,
            {"azswitch.cloud", "azswitch.cloud.reconcile"},
            id="relative-from-package",
        ),
        pytest.param(
            "from .. import reconcile",
            "azswitch.cloud.evs",
            False,
            {"azswitch", "azswitch.reconcile"},
            id="relative-two-levels",
        ),
        pytest.param(
            "from .api import X",
            "azswitch.cloud.evs",
            False,
            {"azswitch.cloud.api", "azswitch.cloud.api.X"},
            id="relative-submodule",
        ),
        pytest.param(
            "def f():\n    import kopf\n", "azswitch.cli", False, {"kopf"}, id="import-inside-function"
        ),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import httpx\n",
            "azswitch.plan",
            False,
            {"typing", "typing.TYPE_CHECKING", "httpx"},
            id="type-checking-block",
        ),
    ],
)
def test_import_parser(source: str, module: str, is_package: bool, expected: set[str]) -> None:
    assert imports_of(source, module, is_package=is_package) == expected


def test_transitive_imports_follow_parent_packages() -> None:
    # Importing azswitch.cloud.api runs azswitch/cloud/__init__.py too; whatever that imports counts.
    if "azswitch.cloud" not in all_modules():
        pytest.skip("azswitch/cloud/__init__.py does not exist")
    via = transitive_imports("azswitch.cloud.api")
    assert set(direct_imports("azswitch.cloud")) <= set(via)


def test_the_package_is_found() -> None:
    assert "azswitch.errors" in all_modules(), f"no modules found under {PACKAGE}"
    assert not (SOURCE_ROOT / "__init__.py").exists(), (
        "operator/ is a source root and must have no __init__.py"
    )


# --- the rules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", existing(PURE))
def test_pure_modules_import_no_io_library(module: str) -> None:
    # Transitive, because importing any azswitch.x.y also runs azswitch.x's __init__.
    offenders = [
        f"{name} (imported by {via})"
        for name, via in sorted(transitive_imports(module).items())
        if any(matches(name, library) for library in IO_LIBRARIES)
    ]
    assert not offenders, f"{module} must stay pure but pulls in: {', '.join(offenders)}"


def test_pure_modules_load_no_io_library_at_runtime() -> None:
    # The ground truth behind the ast rule: a fresh interpreter imports the pure layer and looks.
    modules = existing(PURE)
    code = (
        f"import sys; import {', '.join(modules)}; "
        f"print(' '.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SOURCE_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "", f"importing {modules} loaded {result.stdout.strip()}"


RULES = [
    pytest.param(
        "azswitch.cloud",
        ("kopf", "azswitch.reconcile", "azswitch.handlers"),
        id="cloud-knows-no-kopf-or-reconciler",
    ),
    pytest.param(
        "azswitch.plan",
        ("azswitch.cloud", "azswitch.reconcile"),
        id="planner-knows-no-backend",
    ),
    pytest.param(
        "azswitch.reconcile",
        ("azswitch.cloud.evs", "azswitch.cloud.evs_models", "azswitch.cloud.evs_states", "azswitch.handlers"),
        id="reconciler-knows-no-backend-vocabulary",
    ),
    pytest.param(
        "azswitch.dev.simulator",
        ("azswitch.cloud", "azswitch.reconcile", "azswitch.handlers"),
        id="simulator-shares-nothing-with-the-client",
    ),
]


RUNTIME = (
    "handlers",
    "runtime",
    "controller",
    "reconcile",
    "cloud",
    "plan",
    "status",
    "observation",
    "models",
)
RULES += [
    pytest.param(f"azswitch.{name}", ("azswitch.dev",), id=f"{name}-never-imports-dev-tooling")
    for name in RUNTIME
]


@pytest.mark.parametrize(("package", "forbidden"), RULES)
def test_layer_rules(package: str, forbidden: tuple[str, ...]) -> None:
    offenders = [
        f"{module} imports {name}"
        for module in modules_under(package)
        for name in sorted(direct_imports(module))
        if any(matches(name, bad) for bad in forbidden)
    ]
    assert not offenders, "; ".join(offenders)


def test_only_handlers_import_kopf() -> None:
    offenders = [
        f"{module} ({all_modules()[module].relative_to(SOURCE_ROOT)})"
        for module in all_modules()
        if module != "azswitch.handlers" and any(matches(name, "kopf") for name in direct_imports(module))
    ]
    assert not offenders, (
        f"only azswitch.handlers may import kopf (design.md §1), but so do: {', '.join(offenders)}"
    )
