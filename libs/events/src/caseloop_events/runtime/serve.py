"""Runs a service's FastAPI app with uvicorn, logging JSON lines to stderr and tracing (ADR 0018)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from caseloop_events.runtime.logs import configure_logging, log_format_from_environment
from caseloop_events.runtime.migrations import Migrations, SchemaNotAtHead, check_at_head
from caseloop_events.runtime.service import ServiceSettings, tune_garbage_collection
from caseloop_events.runtime.telemetry import configure_tracing

log = logging.getLogger(__name__)


def serve(create_app: Callable[[], FastAPI], settings: ServiceSettings, migrations: Migrations | None = None) -> None:
    """Configure logging and tracing, build the app and serve it; a configuration the service cannot
    run with (no credentials, the development profile on a public address, an unknown log format, in
    production a database not at its schema's head) ends it with one plain line."""
    try:
        log_format = log_format_from_environment()
    except ValueError as error:
        sys.exit(f"caseloop {settings.service_name}: {error}")
    if settings.profile == "development" and not _is_loopback(settings.host):
        sys.exit(
            f"caseloop {settings.service_name}: the development profile takes well-known keys; it serves only on "
            f"127.0.0.1, not {settings.host}. Configure CASELOOP_API_KEYS_FILE or CASELOOP_JWT_* and drop "
            "CASELOOP_PROFILE=development to serve elsewhere."
        )
    if settings.profile == "production" and migrations is not None:
        # Asked first, before anything is built or logged: the refusal is the one line said.
        try:
            asyncio.run(check_at_head(migrations, settings.resolved_database_url))
        except SchemaNotAtHead as error:
            sys.exit(f"caseloop {settings.service_name}: cannot start: {error}")
        except (OSError, SQLAlchemyError) as error:
            sys.exit(f"caseloop {settings.service_name}: cannot start: its database cannot be read: {error}")
    configure_logging(settings.service_name, settings.log_level, log_format)
    try:
        app = create_app()
    except ValueError as error:
        sys.exit(f"caseloop {settings.service_name}: cannot start: {error}")
    # After the app is built, so a service that cannot start leaves no provider behind; its spans
    # find this one all the same (the API's tracers defer to the provider set later).
    configure_tracing(settings.service_name)
    tune_garbage_collection()
    # uvloop and httptools: the event loop and the HTTP parser in C, a third less CPU per request.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        # uvicorn's lines go through the root logger's renderer (JSON), not a format of its own.
        log_config=None,
        loop="uvloop",
        http="httptools",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
