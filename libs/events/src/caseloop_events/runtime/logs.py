"""Structured logs: one JSON object per line (``CASELOOP_LOG_FORMAT=console`` for people), from
structlog and from every stdlib logger alike — uvicorn's, aiokafka's and the runtime's own (ADR 0018).

A line about a case carries its ``case_id`` and ``correlation_id`` (and ``event_id`` and
``event_type`` while an event is handled): they are bound in context variables where an event is
handled (``bound_to_event``) or a request names a case or a correlation id (runtime.http), so every
line logged meanwhile — by any logger — has them. ``trace_id`` and ``span_id`` come from the
current OpenTelemetry span. Configured once per process, where it starts serving (runtime.serve).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any, Literal, get_args

import structlog
from opentelemetry import trace
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from caseloop_events.contracts.envelope import Envelope

LogFormat = Literal["json", "console"]


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    #: ``json``: one object per line, for a log collector; ``console``: aligned and coloured, for people.
    log_format: LogFormat = Field(default="json", validation_alias="CASELOOP_LOG_FORMAT")


def log_format_from_environment() -> LogFormat:
    """``CASELOOP_LOG_FORMAT``, or a ``ValueError`` whose message is one line saying what it may be."""
    try:
        return LogSettings().log_format
    except ValidationError as error:
        given = error.errors(include_url=False)[0].get("input")
        allowed = " or ".join(get_args(LogFormat))
        raise ValueError(f"CASELOOP_LOG_FORMAT must be {allowed}, not {given!r}") from None


def add_trace_context(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the current span's ``trace_id`` and ``span_id`` (hex, as W3C and trace viewers show them)."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(span_context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(span_context.span_id))
    return event_dict


def _add_service(service_name: str) -> structlog.types.Processor:
    def add_service(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service_name)
        return event_dict

    return add_service


#: The fields a JSON line starts with, in this order; the context and the trace follow.
FIRST_FIELDS = ("timestamp", "level", "service", "logger", "message")


def _in_reading_order(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {
        **{key: event_dict.pop(key) for key in FIRST_FIELDS if key in event_dict},
        **event_dict,
    }


def log_processors(service_name: str) -> list[structlog.types.Processor]:
    """What every line gets, whoever logged it: time, level, logger, service, the context bound
    (case, correlation, event) and the trace."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service_name),
        add_trace_context,
    ]


def log_formatter(service_name: str, log_format: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """The formatter that renders every stdlib record (and structlog's, passed through) as one line."""
    rendering: list[structlog.types.Processor]
    if log_format == "json":
        rendering = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _in_reading_order,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ]
    else:
        rendering = [structlog.dev.ConsoleRenderer()]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=log_processors(service_name),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
    )


def configure_logging(service_name: str, level: str, log_format: LogFormat) -> None:
    """Send every log line of the process to stderr through one renderer (replacing the root
    logger's handlers), and make structlog's loggers go the same way."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(service_name, log_format))
    root = logging.getLogger()
    for previous in root.handlers[:]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            *log_processors(service_name),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def bound_to_event(event: Envelope) -> Iterator[None]:
    """Every line logged meanwhile names the event's case, correlation, id and type."""
    with structlog.contextvars.bound_contextvars(
        case_id=str(event.case_id),
        correlation_id=str(event.correlation_id),
        event_id=str(event.event_id),
        event_type=event.type,
    ):
        yield


def bind_to_request(**names: object) -> None:
    """Every line logged for the rest of the request names these (a case, a correlation id). Each
    request runs in a task of its own, so what one binds never reaches another."""
    structlog.contextvars.bind_contextvars(**{key: str(value) for key, value in names.items()})
