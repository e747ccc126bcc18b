"""``caseloop``: the operator's command line (ADR 0008).

Every verb reads the same settings as the services (``KAFKA_BOOTSTRAP_SERVERS``,
``<SERVICE>_DATABASE_URL``, ``CASELOOP_DATA_DIR``…), so on the ``make run`` system it needs no
options. Nothing here changes the live system unless the verb says so: ``replay`` and ``verify``
write shadow databases only; ``migrate``, ``promote``, ``republish`` and ``deadletter retry`` are
the verbs that act, and each says what it did.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import httpx
import typer
from aiokafka.errors import KafkaError
from alembic.util import CommandError
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from sqlalchemy.exc import SQLAlchemyError

# Typer parses the command line with its own copy of click: its errors are these classes.
from typer._click import exceptions as click

from caseloop_deploy.compare import compare_projections
from caseloop_deploy.databases import (
    DatabaseBusy,
    DatabaseUnreachable,
    UnsafeDatabaseName,
    copy_tables,
    database_exists,
    drop_database,
    recreate_database,
    same_database,
    sibling_url,
    swap_in,
)
from caseloop_deploy.deadletters import NoSuchDeadLetter, find_dead_letter, read_dead_letters, retry_dead_letter
from caseloop_deploy.logread import BrokerStalled, BrokerUnreachable, Position, case_events_from_topics
from caseloop_deploy.replay import replay_service
from caseloop_deploy.republish import republish_service
from caseloop_deploy.services import SERVICE_NAMES, ServiceSpec, UnknownService, service_spec
from caseloop_events.contracts.timeline import build_timeline, render_text
from caseloop_events.runtime.auth import Principal, Role, describe_key_entry, new_api_key
from caseloop_events.runtime.kafka import KafkaSettings
from caseloop_events.runtime.migrations import migrate as migrate_database
from caseloop_events.runtime.personal_data import with_personal_data_masked

T = TypeVar("T")

app = typer.Typer(
    name="caseloop",
    help="Run and operate caseloop: serve a service, schema migrations, case timelines from the log, replay, "
    "diff, promote and verify of projections, republish of a lost topic, dead letters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
deadletter_app = typer.Typer(help="Inspect and re-drive dead-lettered messages.", no_args_is_help=True)
app.add_typer(deadletter_app, name="deadletter")
apikey_app = typer.Typer(help="Issue API keys for calling systems, units and staff.", no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")


class Service(StrEnum):
    intake = "intake"
    triage = "triage"
    dispatch = "dispatch"
    supervision = "supervision"


class Format(StrEnum):
    text = "text"
    json = "json"


ServiceOption = Annotated[Service, typer.Option("--service", "-s", help="the service whose projections to work on")]
BootstrapOption = Annotated[
    str | None,
    typer.Option("--bootstrap-servers", help="the broker (default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)"),
]
ShadowOption = Annotated[
    str | None,
    typer.Option("--shadow-url", help="the shadow database (default: beside the live one, suffix 'shadow')"),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="processes replaying partitions side by side (default: one per core, at most 4, on PostgreSQL "
        "for 50,000 records or more; else 1)",
    ),
]


def _kafka(bootstrap_servers: str | None) -> KafkaSettings:
    settings = KafkaSettings()
    if bootstrap_servers:
        settings = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap_servers})
    return settings


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"caseloop: {message}", err=True)
    raise typer.Exit(code)


#: What an operator can meet and act on: a message and exit status 2, never a traceback.
OPERATOR_ERRORS = (
    BrokerUnreachable,
    BrokerStalled,
    DatabaseUnreachable,
    DatabaseBusy,
    UnsafeDatabaseName,
    UnknownService,
    NoSuchDeadLetter,
    KafkaError,
    SQLAlchemyError,
    sqlite3.Error,
    OSError,
    # Alembic's: a database at a revision this code does not know (made by a newer caseloop).
    CommandError,
)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run the verb; an unreachable broker or database is a clear message and exit status 2."""
    try:
        return asyncio.run(work)
    except OPERATOR_ERRORS as error:
        _fail(f"{error.__class__.__name__}: {error}" if isinstance(error, KafkaError | SQLAlchemyError) else str(error))


def _progress(line: str) -> None:
    # A progress line that rewrites itself on a terminal, and stays one line per update in a log.
    end = "\r" if sys.stderr.isatty() else "\n"
    sys.stderr.write(f"{line}\033[K{end}" if sys.stderr.isatty() else f"{line}{end}")
    sys.stderr.flush()


def _done_with_progress() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")


def _position(value: str | None, option: str) -> Position:
    """An offset (digits) or an ISO 8601 time with its zone."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{option} {value!r} is neither an offset nor an ISO 8601 time", code=2)
    if moment.tzinfo is None:
        _fail(f"{option} {value!r} needs a time zone (e.g. +08:00 or Z)", code=2)
    return moment


def _live_url(spec: ServiceSpec) -> str:
    return spec.settings().resolved_database_url


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming each environment variable whose value the settings refused, and why."""
    settings_classes: dict[str, type[BaseSettings]] = {KafkaSettings.__name__: KafkaSettings}
    for name in SERVICE_NAMES:
        service_settings = service_spec(name).settings_class
        settings_classes[service_settings.__name__] = service_settings
    settings_class = settings_classes.get(error.title)
    problems = []
    for problem in error.errors():
        variable = _variable_of(settings_class, str(problem["loc"][0])) if problem["loc"] else error.title
        given = f"={problem['input']!r}" if isinstance(problem.get("input"), str | int | float) else ""
        problems.append(f"{variable}{given}: {problem['msg']}")
    return "invalid setting " + "; ".join(problems)


def _variable_of(settings_class: type[BaseSettings] | None, field_name: str) -> str:
    """The environment variable a settings field is read from (its alias, else prefix + name)."""
    if settings_class is None:
        return field_name.upper()
    aliases = {str(field.validation_alias) for field in settings_class.model_fields.values() if field.validation_alias}
    if field_name in aliases:  # pydantic names a field read by its alias by the alias
        return field_name.upper()
    field = settings_class.model_fields.get(field_name)
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias.upper()
    prefix = str(settings_class.model_config.get("env_prefix") or "")
    return f"{prefix}{field_name}".upper()


# ------------------------------------------------------------------------------------------ serve


@app.command()
def serve(
    service: Annotated[Service, typer.Argument(help="the service to run", envvar="CASELOOP_SERVICE")],
) -> None:
    """Run one service (its API, consumer, outbox relay and jobs) until SIGTERM: the container image's
    command. Its host, port, database and broker come from its settings, as for python -m caseloop_<service>."""
    start: Callable[[], None] = importlib.import_module(f"caseloop_{service.value}.__main__").main
    start()


# ------------------------------------------------------------------------------------- migrations


@app.command()
def migrate(
    services: Annotated[
        list[Service] | None,
        typer.Argument(metavar="SERVICE", help="the services whose database to migrate; default: all four"),
    ] = None,
) -> None:
    """Bring each service's database to the head of its migrations, one line per service (from → to):
    an empty database is created, one made before migrations taken as the first revision. Run it
    before starting a new version of the services: in production they refuse a database not at head."""
    names = [s.value for s in services] if services else list(SERVICE_NAMES)

    async def work() -> None:
        for name in names:
            spec = service_spec(name)
            upgrade = await migrate_database(spec.migrations, _live_url(spec))
            typer.echo(upgrade.describe())

    _run(work())


# --------------------------------------------------------------------------------------- timeline


@app.command()
def timeline(
    case_id: Annotated[UUID, typer.Argument(help="the case's id")],
    output: Annotated[Format, typer.Option("--format", "-f", help="text for a terminal, json for tools")] = Format.text,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Read one case's events straight from the topics (no service needs to run) and print its
    causal timeline — the same chain as supervision's GET /v1/cases/{id}/timeline."""
    kafka = _kafka(bootstrap_servers)
    topics = [t for t in kafka.all_topics if t != kafka.deadletter_topic]
    events = _run(case_events_from_topics(kafka.kafka_bootstrap_servers, topics, case_id, _progress))
    _done_with_progress()
    if not events:
        _fail(f"no event of case {case_id} on {', '.join(topics)}", code=1)
    # Read straight from the log, the tool answers to no role: the reporter is always masked.
    built = with_personal_data_masked(build_timeline(case_id, events))
    typer.echo(render_text(built) if output is Format.text else built.model_dump_json(indent=2))


# ----------------------------------------------------------------------------- replay, diff, verify


@app.command()
def replay(
    service: ServiceOption,
    start: Annotated[
        str | None, typer.Option("--from", help="an offset (on every partition) or an ISO time; default: the start")
    ] = None,
    stop: Annotated[str | None, typer.Option("--to", help="an offset or an ISO time; default: the end now")] = None,
    shadow_url: ShadowOption = None,
    bootstrap_servers: BootstrapOption = None,
    workers: WorkersOption = None,
) -> None:
    """Rebuild a service's projections from the log into a fresh shadow database. The live
    database is not touched; nothing is published, no callback is made, no timer runs."""
    spec = service_spec(service.value)
    live = _live_url(spec)
    target = shadow_url or sibling_url(live, "shadow")
    if same_database(target, live):
        _fail(f"{target} is {spec.name}'s live database: a replay writes only into a shadow")
    first, last = _position(start, "--from"), _position(stop, "--to")

    async def work() -> None:
        await recreate_database(target)
        kafka = _kafka(bootstrap_servers)
        report = await replay_service(spec, kafka, target, start=first, stop=last, progress=_progress, workers=workers)
        _done_with_progress()
        typer.echo(report.summary())
        for skipped in report.skipped:
            typer.echo(f"  skipped {skipped}")
        typer.echo(f"shadow: {target}")

    _run(work())


@app.command()
def diff(
    service: ServiceOption,
    shadow_url: ShadowOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per difference")] = False,
) -> None:
    """Compare the shadow with the live projections and list every difference (exit status 1 if any)."""
    spec = service_spec(service.value)
    live = _live_url(spec)
    shadow = shadow_url or sibling_url(live, "shadow")

    async def work() -> int:
        if not await database_exists(shadow):
            _fail(f"no shadow database {shadow}: run `caseloop replay --service {spec.name}` first")
        differences = await compare_projections(spec, live, shadow)
        for difference in differences:
            typer.echo(json.dumps(difference.as_json(), ensure_ascii=False) if as_json else difference.describe())
        if not as_json:
            typer.echo(f"{spec.name}: {len(differences)} difference(s) between live and shadow", err=True)
        return len(differences)

    if _run(work()):
        raise typer.Exit(1)


@app.command()
def promote(
    service: ServiceOption,
    shadow_url: ShadowOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Swap the shadow in as the service's live database. The service must be stopped. Its outbox
    (its own events) and the tables no replay can rebuild are carried over from the live database;
    the live database is kept under a dated name."""
    spec = service_spec(service.value)
    settings = spec.settings()
    live = settings.resolved_database_url
    shadow = shadow_url or sibling_url(live, "shadow")
    if same_database(shadow, live):
        _fail(f"{shadow} is {spec.name}'s live database already")
    if _answers(f"http://{settings.host}:{settings.port}/healthz"):
        _fail(f"{spec.name} is running on {settings.host}:{settings.port}: stop it before promoting")
    if not yes:
        typer.confirm(f"replace {spec.name}'s live database with {shadow}?", abort=True)

    async def work() -> None:
        if not await database_exists(shadow):
            _fail(f"no shadow database {shadow}: run `caseloop replay --service {spec.name}` first")
        copied = await copy_tables(live, shadow, spec.metadata, spec.carried_over)
        kept = await swap_in(shadow, live)
        carried = ", ".join(f"{table} ({rows:,} rows)" for table, rows in copied.items())
        typer.echo(f"{spec.name}: the shadow is live now; carried over {carried}; the old database is {kept}")

    _run(work())


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code < 500
    except httpx.HTTPError:
        return False


@app.command()
def verify(
    services: Annotated[
        list[Service] | None, typer.Option("--service", "-s", help="a service to verify (repeatable); default: all")
    ] = None,
    bootstrap_servers: BootstrapOption = None,
    workers: WorkersOption = None,
) -> None:
    """Rebuild every service's projections from offset 0 into a scratch database and prove them
    identical to the live ones; exit status 1 on any difference. Run it while the system is idle:
    an event in flight shows as a difference."""
    names = [s.value for s in services] if services else list(SERVICE_NAMES)

    async def work() -> int:
        kafka = _kafka(bootstrap_servers)
        total = 0
        for name in names:
            spec = service_spec(name)
            live = _live_url(spec)
            scratch = sibling_url(live, "verify")
            await recreate_database(scratch)
            try:
                report = await replay_service(spec, kafka, scratch, progress=_progress, workers=workers)
                _done_with_progress()
                differences = await compare_projections(spec, live, scratch)
            finally:
                await drop_database(scratch)
            for difference in differences:
                typer.echo(f"  {difference.describe()}")
            verdict = "identical" if not differences else f"{len(differences)} difference(s)"
            typer.echo(f"{report.summary()}; projections {verdict}")
            total += len(differences)
        return total

    if _run(work()):
        typer.echo("verify: the live projections differ from the log", err=True)
        raise typer.Exit(1)
    typer.echo("verify: every projection is what the log says")


# -------------------------------------------------------------------------------------- republish


@app.command()
def republish(
    services: Annotated[
        list[Service],
        typer.Option("--service", "-s", help="the service whose topic to restore (repeatable)"),
    ],
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Restore a service's topic from its own event store (the outbox), for when the broker lost its
    data: events the topic lacks are sent again, in order. Idempotent: running it twice is harmless."""

    async def work() -> None:
        kafka = _kafka(bootstrap_servers)
        for service in services:
            spec = service_spec(service.value)
            report = await republish_service(spec, kafka, _live_url(spec), progress=_progress)
            _done_with_progress()
            typer.echo(report.summary())

    _run(work())


# ------------------------------------------------------------------------------------- dead letters


@deadletter_app.command("list")
def deadletter_list(bootstrap_servers: BootstrapOption = None) -> None:
    """Every dead-lettered message: its id, when, which consumer, where it came from, why."""
    letters = _run(read_dead_letters(_kafka(bootstrap_servers)))
    for letter in letters:
        origin = letter.origin
        where = f"{origin.get('topic')}[{origin.get('partition')}]@{origin.get('offset')}"
        when = f"{letter.dead_lettered_at:%Y-%m-%d %H:%M:%S}"
        typer.echo(f"{letter.letter_id:>10}  {when}  {letter.consumer:<12} {where}  {letter.error[:100]}")
    typer.echo(f"{len(letters)} dead letter(s)", err=True)


@deadletter_app.command("show")
def deadletter_show(
    letter_id: Annotated[str, typer.Argument(help="the id `caseloop deadletter list` shows (partition-offset)")],
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """One dead letter in full: the error, the origin, and the original record decoded."""
    letter = _run(find_dead_letter(_kafka(bootstrap_servers), letter_id))
    typer.echo(json.dumps(letter.shown(), ensure_ascii=False, indent=2))


@deadletter_app.command("retry")
def deadletter_retry(
    letter_id: Annotated[str, typer.Argument(help="the id `caseloop deadletter list` shows (partition-offset)")],
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Send the original record again to the topic it came from: the consumer that failed on it gets
    another go, those that took it skip it by its event id."""
    where = _run(retry_dead_letter(_kafka(bootstrap_servers), letter_id))
    typer.echo(f"dead letter {letter_id} sent again to {where}")


def main(args: Sequence[str] | None = None) -> None:
    """Run a verb. A bad argument, an invalid setting or an unreachable part is one line on stderr
    and exit status 2 (an answer refused on the way, ``--yes`` not given: 1), never a traceback."""
    # aiokafka logs each failed connection attempt; the verb says in one line what it could not reach.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    command = typer.main.get_command(app)
    try:
        status = command.main(args=args, prog_name="caseloop", standalone_mode=False)
    except click.NoArgsIsHelpError as error:
        typer.echo(error.format_message())
        status = 2
    except click.UsageError as error:
        verb = error.ctx.command_path if error.ctx is not None else "caseloop"
        # click lays some messages out on several lines (the choices of an option): one line here.
        message = " ".join(error.format_message().split())
        typer.echo(f"caseloop: {message} (see `{verb} --help`)", err=True)
        status = 2
    except click.ClickException as error:
        typer.echo(f"caseloop: {error.format_message()}", err=True)
        status = error.exit_code
    except typer.Abort:
        typer.echo("caseloop: aborted", err=True)
        status = 1
    except ValidationError as error:
        typer.echo(f"caseloop: {describe_invalid_settings(error)}", err=True)
        status = 2
    sys.exit(status if isinstance(status, int) else 0)


# ----------------------------------------------------------------------------- API keys


@apikey_app.command("new")
def new_key(
    key_id: Annotated[
        str, typer.Option("--id", help="names the key in logs and the audit trail, e.g. hotline-2026-11")
    ],
    role: Annotated[Role, typer.Option(help="the caller's role")],
    source_system: Annotated[str | None, typer.Option(help="a source system's name (role source_system)")] = None,
    unit_id: Annotated[str | None, typer.Option(help="the unit (role unit)")] = None,
    region_code: Annotated[str | None, typer.Option(help="a town's or the district's code, to scope a role")] = None,
) -> None:
    """Make a new key: print the key once (hand it to the caller) and the line for the keys file
    (CASELOOP_API_KEYS_FILE), which holds only its SHA-256. To rotate: add the new line, hand out
    the key, then remove the old line; the services pick the file up within a second."""
    try:
        principal = Principal(
            subject=key_id, role=role, source_system=source_system, unit_id=unit_id, region_code=region_code
        )
    except ValidationError as error:
        _fail(f"not a valid caller: {error.errors()[0]['msg']}")
    key = new_api_key()
    typer.echo(f"key (give it to the caller; it is not stored anywhere): {key}")
    typer.echo(f"keys file entry: {describe_key_entry(key_id, key, principal)}")
