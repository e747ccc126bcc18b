"""A case's causal timeline: its events with their causes, its status and how long each stage took.

Pure: it reads envelopes and nothing else, so supervision answers it from its case log and an
operator's command line builds the same view from events read straight off Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from caseloop_events.contracts.causal import causal_order
from caseloop_events.contracts.common import CaseStatus
from caseloop_events.contracts.envelope import Actor, Envelope, Producer
from caseloop_events.contracts.intake import CaseAccepted
from caseloop_events.contracts.lifecycle import CaseProgress, progress


class TimelineEntry(BaseModel):
    """One event of the case, placed in its chain of cause and effect."""

    model_config = ConfigDict(frozen=True)

    event_id: UUID
    type: str
    schema_version: int
    occurred_at: datetime
    producer: Producer
    actor: Actor
    correlation_id: UUID
    causation_id: UUID | None
    cause_type: str | None = Field(description="the type of the causing event, when it is one of the case's")
    depth: int = Field(description="0 for an event with no cause among the case's events, else its cause's + 1")
    since_cause_seconds: float | None = Field(description="time from the causing event, when it is the case's")
    payload: dict[str, Any]


class Stage(StrEnum):
    SCREENING = "screening"
    JUDGMENT = "judgment"
    ASSIGNMENT = "assignment"
    ACKNOWLEDGEMENT = "acknowledgement"
    HANDLING = "handling"
    VERIFICATION = "verification"
    EVALUATION = "evaluation"
    TOTAL = "total"


class StageDuration(BaseModel):
    """How long one stage of the loop took in its latest round; no end while it is not over."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    started_at: datetime
    ended_at: datetime | None
    seconds: float | None


class CaseTimeline(BaseModel):
    """Every event of a case in causal order, the status they lead to, and the stages' durations."""

    model_config = ConfigDict(frozen=True)

    case_id: UUID
    case_no: str | None
    status: CaseStatus | None
    events: list[TimelineEntry]
    stages: list[StageDuration]


#: The stages between two kinds of event: (stage, types that start a round, types that end it).
#: A failed verification ends a verification round and sends the case back to its unit (rework),
#: a reopening sends it back to dispatch: each starts a new round of the stage that follows, so
#: the round shown is the latest.
_STAGE_BOUNDARIES: tuple[tuple[Stage, frozenset[str], frozenset[str]], ...] = (
    (Stage.JUDGMENT, frozenset({"case.accepted"}), frozenset({"case.judged"})),
    (Stage.ASSIGNMENT, frozenset({"case.judged", "case.reopened"}), frozenset({"case.assigned"})),
    (Stage.ACKNOWLEDGEMENT, frozenset({"case.assigned"}), frozenset({"case.acknowledged"})),
    (Stage.HANDLING, frozenset({"case.acknowledged", "case.verification_failed"}), frozenset({"case.result_reported"})),
    (Stage.VERIFICATION, frozenset({"case.result_reported"}), frozenset({"case.verified", "case.verification_failed"})),
    (Stage.EVALUATION, frozenset({"case.verified"}), frozenset({"case.evaluated"})),
)


def build_timeline(case_id: UUID, events: Iterable[Envelope]) -> CaseTimeline:
    """The case's timeline from its events, in whatever order they come; other cases' events are left out."""
    ordered = causal_order(e for e in events if e.case_id == case_id)
    return CaseTimeline(
        case_id=case_id,
        case_no=_case_no(ordered),
        status=_status_after(ordered),
        events=_entries(ordered),
        stages=_stages(ordered),
    )


def _case_no(ordered: Sequence[Envelope]) -> str | None:
    numbers = (getattr(e.payload, "case_no", None) for e in ordered)
    return next((no for no in numbers if isinstance(no, str)), None)


def _status_after(ordered: Sequence[Envelope]) -> CaseStatus | None:
    current = CaseProgress()
    for event in ordered:
        current = progress(current, event.payload) or current
    return current.status


def _entries(ordered: Sequence[Envelope]) -> list[TimelineEntry]:
    by_id = {e.event_id: e for e in ordered}
    depths: dict[UUID, int] = {}
    entries: list[TimelineEntry] = []
    for event in ordered:
        # causal_order treats an event naming itself as its cause as having none; so does the timeline.
        cause = by_id.get(event.causation_id) if event.causation_id not in (None, event.event_id) else None
        # Causes come first in causal order; only a (never produced) causation cycle leaves a depth unknown.
        depth = depths[cause.event_id] + 1 if cause is not None and cause.event_id in depths else 0
        depths[event.event_id] = depth
        entries.append(
            TimelineEntry(
                event_id=event.event_id,
                type=event.type,
                schema_version=event.schema_version,
                occurred_at=event.occurred_at,
                producer=event.producer,
                actor=event.actor,
                correlation_id=event.correlation_id,
                causation_id=event.causation_id,
                cause_type=cause.type if cause is not None else None,
                depth=depth,
                since_cause_seconds=None if cause is None else (event.occurred_at - cause.occurred_at).total_seconds(),
                payload=event.payload.model_dump(mode="json"),
            )
        )
    return entries


def _stages(ordered: Sequence[Envelope]) -> list[StageDuration]:
    stages: list[StageDuration] = []
    accepted = _last(ordered, frozenset({"case.accepted"}))
    if accepted is not None:
        stages.append(_stage(Stage.SCREENING, _reported_at(ordered[accepted]), ordered[accepted].occurred_at))
    for stage, starts, ends in _STAGE_BOUNDARIES:
        round_ = _latest_round(ordered, starts, ends)
        if round_ is not None:
            stages.append(_stage(stage, *round_))
    if ordered:
        closed = _last(ordered, frozenset({"case.closed"}))
        ended_at = ordered[closed].occurred_at if closed is not None else None
        stages.append(_stage(Stage.TOTAL, ordered[0].occurred_at, ended_at))
    return stages


def _reported_at(accepted: Envelope) -> datetime:
    """When the screening began: when the reported thing happened, unless the report puts that after acceptance."""
    reported = accepted.payload.reported_occurred_at if isinstance(accepted.payload, CaseAccepted) else None
    return reported if reported is not None and reported <= accepted.occurred_at else accepted.occurred_at


def _latest_round(
    ordered: Sequence[Envelope], starts: frozenset[str], ends: frozenset[str]
) -> tuple[datetime, datetime | None] | None:
    """The latest round of a stage: open from the last start if nothing ended it, else from the
    start nearest before the last end to that end."""
    last_start = _last(ordered, starts)
    if last_start is None:
        return None
    last_end = _last(ordered, ends)
    if last_end is None or last_end < last_start:
        return ordered[last_start].occurred_at, None
    start = _last(ordered[:last_end], starts)
    assert start is not None  # last_start is before last_end
    return ordered[start].occurred_at, ordered[last_end].occurred_at


def _last(ordered: Sequence[Envelope], types: frozenset[str]) -> int | None:
    return next((n for n in range(len(ordered) - 1, -1, -1) if ordered[n].type in types), None)


def _stage(stage: Stage, started_at: datetime, ended_at: datetime | None) -> StageDuration:
    seconds = (ended_at - started_at).total_seconds() if ended_at is not None else None
    return StageDuration(stage=stage, started_at=started_at, ended_at=ended_at, seconds=seconds)


# ------------------------------------------------------------------------------------------- text

#: Deeper chains are drawn at this depth, so a long chain does not push the line off the screen.
MAX_INDENT_LEVELS = 8

#: Payload fields worth a glance on an event's line, in the order shown.
_KEY_FIELDS = (
    "category",
    "sla_tier",
    "unit_id",
    "to_unit_id",
    "clock",
    "reason",
    "reason_code",
    "rating",
    "rung",
    "level",
    "due_at",
    "status",
)

_LONGEST_VALUE = 60


def render_text(timeline: CaseTimeline) -> str:
    """The timeline as plain text for a terminal: a header, one line per event, then the stages.

    Deterministic: UTC times to the second, no colours, nothing read from the current time.
    """
    status = timeline.status.value if timeline.status is not None else "-"
    lines = [f"case {timeline.case_no or '-'}  id {timeline.case_id}  status {status}"]
    lines.extend(_event_line(entry) for entry in timeline.events)
    lines.append("stages")
    width = max((len(s.stage.value) for s in timeline.stages), default=0)
    lines.extend(f"  {s.stage.value:<{width}}  {_stage_text(s)}" for s in timeline.stages)
    if not timeline.stages:
        lines.append("  none")
    return "\n".join(lines) + "\n"


def _event_line(entry: TimelineEntry) -> str:
    indent = "  " * min(entry.depth, MAX_INDENT_LEVELS)
    parts = [
        _utc(entry.occurred_at),
        f"{indent}{entry.type}",
        entry.producer.value,
        f"{entry.actor.id}/{entry.actor.role.value}",
        str(entry.event_id)[:8] + (f" <- {str(entry.causation_id)[:8]}" if entry.causation_id else ""),
    ]
    parts.extend(f"{name}={_field_text(name, entry.payload[name])}" for name in _KEY_FIELDS if name in entry.payload)
    return "  ".join(parts)


def _field_text(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith("_at") and isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            pass  # not a time after all: shown as it is
    text = " ".join(str(value).split())  # one line, whatever the payload holds
    if len(text) > _LONGEST_VALUE:
        text = text[: _LONGEST_VALUE - 1] + "…"
    # Quoted when it has spaces or is empty, so the next field is not read as part of it.
    return json.dumps(text, ensure_ascii=False) if not text or " " in text else text


def _stage_text(stage: StageDuration) -> str:
    if stage.seconds is None:
        return f"open since {_utc(stage.started_at)}"
    return human_duration(stage.seconds)


def human_duration(seconds: float) -> str:
    """``2d 03h 04m``, ``3h 04m 05s``, ``12m 05s`` or ``7s``: whole seconds, the two or three largest units."""
    sign, left = ("-", int(-seconds)) if seconds < 0 else ("", int(seconds))
    days, left = divmod(left, 86_400)
    hours, left = divmod(left, 3_600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h {minutes:02d}m"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def _utc(moment: datetime) -> str:
    # A naive time would be read as the machine's local time: caseloop's times are UTC.
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
