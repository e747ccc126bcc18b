"""Each service's schema migrations (ADR 0016) on real databases (SQLite and PostgreSQL): the revisions
build exactly the models, a database the previous release filled upgrades and `caseloop verify`
still passes on it, a database made before migrations is taken as the first revision, and the
service itself refuses in production a database one revision behind and migrates it in development."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from caseloop_deploy.cli import main
from caseloop_deploy.services import SERVICE_NAMES, service_spec
from caseloop_dispatch.app import create_app
from caseloop_dispatch.config import DispatchSettings
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.dispatch import CaseAssigned
from caseloop_events.contracts.envelope import Actor, ActorRole, Envelope, Producer, event_caused_by, new_event
from caseloop_events.contracts.intake import CaseAccepted, CaseLocation
from caseloop_events.contracts.triage import CaseJudged, JudgedBy
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.migrations import BASELINE, Migrations, on
from caseloop_events.runtime.storage import create_engine
from caseloop_events.testing.fixtures import publish, read_events

DISPATCH = service_spec("dispatch")
GRID = "3301100010010101"
#: The revision before head: the schema of the release before this one.
PREVIOUS = "v0001"

T = TypeVar("T")


async def run_on(database_url: str, work: Callable[[Connection], T]) -> T:
    engine = create_engine(database_url, pool_size=1)
    try:
        return await on(engine, work)
    finally:
        await engine.dispose()


def partial_indexes(connection: Connection, table: str) -> dict[str, str]:
    """Each partial index of the table and its condition, as the database has it."""
    if connection.dialect.name == "postgresql":
        return {
            index["name"]: str(index["dialect_options"]["postgresql_where"])
            for index in inspect(connection).get_indexes(table)
            if index["name"] and "postgresql_where" in index.get("dialect_options", {})
        }
    rows = connection.execute(
        text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :table AND sql LIKE '%WHERE%'"),
        {"table": table},
    )
    return {name: sql.split(" WHERE ", 1)[1] for name, sql in rows}


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_the_revisions_of_every_service_build_exactly_its_models(service: str, database_url: str) -> None:
    migrations = service_spec(service).migrations

    def upgrade_from_nothing(connection: Connection) -> tuple[str | None, list[object], dict[str, str], set[str]]:
        migrations.upgrade(connection)
        return (
            migrations.current(connection),
            migrations.differences(connection),
            partial_indexes(connection, "outbox"),
            set(inspect(connection).get_table_names()),
        )

    current, differences, outbox_partial_indexes, tables = await run_on(database_url, upgrade_from_nothing)

    assert current == migrations.head
    assert differences == []  # what `alembic check` asks: autogenerate would write nothing
    assert "published_at IS NULL" in outbox_partial_indexes["ix_outbox_unpublished"]
    # A version table of its own, so services could share one database.
    assert f"alembic_version_{service}" in tables
    assert "alembic_version" not in tables


async def test_an_empty_database_is_created_from_the_models_and_stamped_at_head(database_url: str) -> None:
    migrations = DISPATCH.migrations

    upgrade = await run_on(database_url, migrations.bring_to_head)

    assert (upgrade.before, upgrade.after) == (None, migrations.head)
    assert await run_on(database_url, migrations.differences) == []


# --- a database the previous release filled --------------------------------------------------------


def a_case_judged(n: int) -> tuple[Envelope, Envelope]:
    case_id = uuid.uuid4()
    now = datetime.now(UTC)
    accepted = new_event(
        CaseAccepted(
            case_no=f"CL{uuid.uuid4().int % 10**9:09d}",
            source_system="hotline-12345",
            external_id=f"MIGRATE-{n}-{uuid.uuid4()}",
            title="人行道塌陷",
            description="柳岸社区门口人行道塌了一个坑",
            location=CaseLocation(grid_code=GRID, village_code=GRID[:12], town_code=GRID[:9], district_code=GRID[:6]),
            accepted_at=now,
        ),
        case_id=case_id,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=now,
        correlation_id=uuid.uuid4(),
    )
    judged = event_caused_by(
        accepted,
        CaseJudged(
            category="road_damage",
            risk_level=3,
            handling_level=HandlingLevel.TOWN,
            sla_tier=SlaTierName.GENERAL,
            judged_by=JudgedBy.RULES,
            confidence=0.95,
        ),
        actor=Actor.system(Producer.TRIAGE),
        occurred_at=now + timedelta(seconds=1),
        decision="judged",
    )
    return accepted, judged


async def cases_assigned_by_dispatch(database_url: str, kafka: KafkaSettings, data_dir: Path, count: int) -> None:
    """Cases accepted and judged on the topics, assigned by the running dispatch service (its consumer,
    units of work and relay): its database holds their streams, projections, outbox and checkpoints."""
    app = create_app(DispatchSettings(database_url=database_url, CASELOOP_DATA_DIR=data_dir), kafka)
    cases = [a_case_judged(n) for n in range(count)]
    async with app.router.lifespan_context(app):
        for accepted, judged in cases:
            await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(Producer.INTAKE), accepted)
            await publish(kafka.kafka_bootstrap_servers, kafka.topic_of(Producer.TRIAGE), judged)
        wanted = {accepted.case_id for accepted, _ in cases}
        await read_events(
            kafka.kafka_bootstrap_servers,
            kafka.topic_of(Producer.DISPATCH),
            until=lambda events: wanted <= {e.case_id for e in events if isinstance(e.payload, CaseAssigned)},
        )


def as_the_previous_release_left_it(
    migrations: Migrations, *, made_before_migrations: bool
) -> Callable[[Connection], None]:
    def downgrade(connection: Connection) -> None:
        migrations.downgrade(connection, PREVIOUS)
        if made_before_migrations:  # create_all made it: the tables, no version table
            connection.execute(text(f"DROP TABLE {migrations.version_table}"))

    return downgrade


def caseloop(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def operator_environment(
    monkeypatch: pytest.MonkeyPatch, kafka_settings: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    """What `caseloop` reads: the broker, the topics' namespace and dispatch's database."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_settings.kafka_bootstrap_servers)
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", str(kafka_settings.kafka_idempotent_producer).lower())
    monkeypatch.setenv("CASELOOP_TOPIC_PARTITIONS", str(kafka_settings.caseloop_topic_partitions))
    monkeypatch.setenv("CASELOOP_TOPIC_NAMESPACE", kafka_settings.caseloop_topic_namespace)
    monkeypatch.setenv("CASELOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DISPATCH_DATABASE_URL", database_url)


@pytest.mark.parametrize("made_before_migrations", [False, True], ids=["at the previous revision", "before migrations"])
@pytest.mark.usefixtures("operator_environment")
async def test_a_database_filled_by_the_previous_release_upgrades_and_verify_still_passes(
    made_before_migrations: bool,
    database_url: str,
    kafka_settings: KafkaSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    migrations = DISPATCH.migrations
    await cases_assigned_by_dispatch(database_url, kafka_settings, tmp_path, count=3)
    # The rows were written at head; the downgrade leaves them in the previous release's schema.
    await run_on(
        database_url, as_the_previous_release_left_it(migrations, made_before_migrations=made_before_migrations)
    )
    assert await run_on(database_url, migrations.current) == (None if made_before_migrations else PREVIOUS)

    code, said, _ = await asyncio.to_thread(caseloop, capsys, "migrate", "dispatch")

    assert code == 0
    assert said == f"dispatch: {BASELINE if made_before_migrations else PREVIOUS} → {migrations.head}\n"

    def kept_and_upgraded(connection: Connection) -> tuple[int, list[object]]:
        outbox = DISPATCH.definition.tables.runtime.outbox
        return len(connection.execute(select(outbox.c.event_id)).all()), migrations.differences(connection)

    outboxed, differences = await run_on(database_url, kept_and_upgraded)
    assert outboxed == 3  # one case.assigned a case
    assert differences == []

    code, said, err = await asyncio.to_thread(caseloop, capsys, "verify", "--service", "dispatch")

    assert code == 0, err
    assert "projections identical" in said
    assert "verify: every projection is what the log says" in said


@pytest.mark.usefixtures("operator_environment")
async def test_migrate_says_a_database_at_head_is_at_head(capsys: pytest.CaptureFixture[str]) -> None:
    await asyncio.to_thread(caseloop, capsys, "migrate", "dispatch")

    code, said, _ = await asyncio.to_thread(caseloop, capsys, "migrate", "dispatch")

    assert code == 0
    assert said == f"dispatch: at {DISPATCH.migrations.head} already\n"


# --- the service process ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
async def a_database_one_revision_behind(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    migrations = DISPATCH.migrations
    await run_on(url, lambda connection: migrations.upgrade(connection, PREVIOUS))
    return url


def dispatch_environment(database_url: str, profile: str, tmp_path: Path, bootstrap_servers: str) -> dict[str, str]:
    keys_file = tmp_path / "api-keys.json"
    keys_file.write_text(json.dumps({"keys": []}))
    return {
        **os.environ,
        "CASELOOP_PROFILE": profile,
        "CASELOOP_API_KEYS_FILE": str(keys_file),
        "CASELOOP_DATA_DIR": str(tmp_path),
        "DISPATCH_DATABASE_URL": database_url,
        "DISPATCH_PORT": str(free_port()),
        "DISPATCH_HOST": "127.0.0.1",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
    }


async def test_in_production_the_service_refuses_a_database_one_revision_behind_in_one_line(
    a_database_one_revision_behind: str, tmp_path: Path
) -> None:
    head = DISPATCH.migrations.head
    # No broker is needed: the refusal comes before the service reaches for it.
    env = dispatch_environment(a_database_one_revision_behind, "production", tmp_path, f"127.0.0.1:{free_port()}")

    refused = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "caseloop_dispatch"], env=env, capture_output=True, text=True, timeout=60
    )

    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("caseloop dispatch: cannot start: ")
    assert f"at revision {PREVIOUS}, the code needs revision {head} (head)" in refused.stderr
    assert "run `caseloop migrate dispatch`" in refused.stderr
    assert await run_on(a_database_one_revision_behind, DISPATCH.migrations.current) == PREVIOUS


async def test_in_development_the_service_migrates_a_database_one_revision_behind_as_it_starts(
    a_database_one_revision_behind: str, tmp_path: Path, kafka_settings: KafkaSettings
) -> None:
    env = dispatch_environment(
        a_database_one_revision_behind, "development", tmp_path, kafka_settings.kafka_bootstrap_servers
    )
    env["CASELOOP_TOPIC_NAMESPACE"] = kafka_settings.caseloop_topic_namespace
    env["CASELOOP_TOPIC_PARTITIONS"] = str(kafka_settings.caseloop_topic_partitions)
    env["KAFKA_IDEMPOTENT_PRODUCER"] = str(kafka_settings.kafka_idempotent_producer).lower()
    service = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "caseloop_dispatch", env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            for _ in range(300):
                if service.returncode is not None:
                    break
                try:
                    if (await client.get(f"http://127.0.0.1:{env['DISPATCH_PORT']}/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                pytest.fail("dispatch did not answer /healthz within 30 s")
        assert service.returncode is None, "dispatch stopped as it started"
    finally:
        if service.returncode is None:
            service.terminate()
        said, _ = await service.communicate()
    assert b"Traceback" not in said, said.decode()

    assert await run_on(a_database_one_revision_behind, DISPATCH.migrations.current) == DISPATCH.migrations.head
