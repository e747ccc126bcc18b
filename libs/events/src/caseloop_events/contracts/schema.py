"""Exports the JSON Schema of every event type and writes golden samples of each.

``python -m caseloop_events.contracts.schema --schemas libs/events/schemas --samples libs/events/golden``
"""

from __future__ import annotations

import argparse
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from caseloop_events.contracts import dispatch, intake, supervision, triage
from caseloop_events.contracts.common import HandlingLevel, SlaTierName
from caseloop_events.contracts.envelope import (
    Actor,
    ActorRole,
    Envelope,
    EventPayload,
    deterministic_id,
    new_event,
    registered_payloads,
)

SAMPLE_CASE_ID = uuid.UUID("0f8c6a52-5d1e-5b8e-9a43-6a1d2c3b4e5f")
SAMPLE_CORRELATION_ID = uuid.UUID("5b0d7e8a-1c2f-4a3b-8d9e-0f1a2b3c4d5e")
SAMPLE_TIME = datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
SAMPLE_DUE = datetime(2026, 12, 4, 1, 30, tzinfo=UTC)
SAMPLE_LOCATION = intake.CaseLocation(
    grid_code="3301100010010101",
    village_code="330110001001",
    town_code="330110001",
    district_code="330110",
    address="柳岸社区3号楼",
    lat=30.25,
    lon=120.16,
)

#: One sample payload per event type: the golden files are these, serialised.
SAMPLE_PAYLOADS: tuple[EventPayload, ...] = (
    intake.CaseAccepted(
        case_no="CL202611270000001",
        source_system="hotline-12345",
        external_id="HL-2026-000123",
        title="小区门口垃圾堆积",
        description="垃圾三天没人清运，气味很大",
        reported_category="sanitation",
        location=SAMPLE_LOCATION,
        reporter=intake.Reporter(name="张三", phone="13800000000"),
        reported_occurred_at=SAMPLE_TIME,
        attachments=("https://files.example/photo-1.jpg",),
        callback_url="https://hotline.example/caseloop/feedback",
        accepted_at=SAMPLE_TIME,
    ),
    intake.CaseRejected(
        case_no="CL202611270000002",
        source_system="hotline-12345",
        external_id="HL-2026-000124",
        title="测试",
        description="联调测试，请忽略",
        reason_code=intake.RejectionReason.TEST_OR_SPAM,
        note="系统联调测试件",
    ),
    intake.CaseLinkedAsDuplicate(
        case_no="CL202611270000003",
        source_system="grid-app",
        external_id="GW-2026-000456",
        title="小区门口垃圾没人清运",
        description="垃圾堆了三天，味道很大",
        location=SAMPLE_LOCATION,
        original_case_id=uuid.UUID("7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"),
        original_case_no="CL202611270000001",
        similarity=0.92,
        reason="同网格同类别24小时内相似描述",
    ),
    intake.CasesMerged(
        into_case_id=uuid.UUID("7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"),
        into_case_no="CL202611270000001",
        merged_by="supervisor-7",
        reason="同一事项",
    ),
    intake.CaseUnmerged(
        from_case_id=uuid.UUID("7a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d"),
        unmerged_by="supervisor-7",
        reason="不是同一事项",
    ),
    triage.CaseJudged(
        category="sanitation",
        risk_level=3,
        campaign_ids=(),
        handling_level=HandlingLevel.TOWN,
        sla_tier=SlaTierName.GENERAL,
        rules_fired=(triage.RuleHit(rule_id="R-KW-SANITATION", reason="描述含环境卫生关键词"),),
        judged_by=triage.JudgedBy.RULES,
        confidence=0.8,
    ),
    triage.CaseQueuedForReview(reason="no rule named a category", candidate_categories=("sanitation", "greening")),
    dispatch.CaseAssigned(
        unit_id="U-TOWN-330110001",
        unit_name="青石街道办事处",
        town_code="330110001",
        route=dispatch.AssignmentRoute.RESPONSIBILITY_LIST,
        reason="职责清单：环境卫生由该单位负责",
    ),
    dispatch.CaseAcknowledged(unit_id="U-TOWN-330110001", acknowledged_by="handler-1"),
    dispatch.CaseReturned(unit_id="U-TOWN-330110001", returned_by="handler-1", reason="不属于本单位职责"),
    dispatch.CaseTransferred(
        from_unit_id="U-TOWN-330110001",
        to_unit_id="U-DISTRICT-COMMAND",
        transferred_by="handler-1",
        reason="需区级协调",
    ),
    dispatch.ExtensionRequested(
        unit_id="U-TOWN-330110001", requested_by="handler-1", reason="需采购材料", requested_due_at=SAMPLE_DUE
    ),
    dispatch.CaseResultReported(
        unit_id="U-TOWN-330110001",
        reported_by="handler-1",
        summary="已清运完毕",
        evidence=("https://files.example/after.jpg",),
    ),
    supervision.CaseVerified(verified_by="supervisor-7", note="现场核查属实"),
    supervision.CaseVerificationFailed(verified_by="supervisor-7", note="仍有垃圾"),
    supervision.CaseEvaluated(rating=supervision.Rating.SATISFIED, comment="处理及时"),
    supervision.CaseClosed(reason=supervision.ClosureReason.EVALUATED),
    supervision.CaseReopened(reason="市民不满意", reopen_count=1),
    supervision.FeedbackDelivered(
        about_event_id=uuid.UUID("3c4d5e6f-7a8b-5c9d-8e0f-1a2b3c4d5e6f"),
        about_type="case.closed",
        url="https://hotline.example/caseloop/feedback",
        attempt=2,
        status_code=200,
    ),
    supervision.FeedbackFailed(
        about_event_id=uuid.UUID("3c4d5e6f-7a8b-5c9d-8e0f-1a2b3c4d5e6f"),
        about_type="case.closed",
        url="https://hotline.example/caseloop/feedback",
        attempt=1,
        error="HTTP 503",
        next_attempt_at=SAMPLE_DUE,
    ),
    supervision.DeadlineSet(
        clock=supervision.ClockKind.HANDLING,
        reason=supervision.DeadlineReason.STARTED,
        started_at=SAMPLE_TIME,
        due_at=SAMPLE_DUE,
        allowed_seconds=604800,
        sla_tier="general",
        sla_profile="normal",
        unit_id="U-TOWN-330110001",
    ),
    supervision.ClockPaused(
        clock=supervision.ClockKind.HANDLING, reason="returned", paused_at=SAMPLE_TIME, due_at=SAMPLE_DUE
    ),
    supervision.ClockStopped(
        clock=supervision.ClockKind.HANDLING,
        reason="result_reported",
        stopped_at=SAMPLE_TIME,
        due_at=SAMPLE_DUE,
        on_time=True,
    ),
    supervision.SupervisionNoticeIssued(
        rung="yellow",
        clock=supervision.ClockKind.HANDLING,
        due_at=SAMPLE_TIME,
        reached_at=SAMPLE_DUE,
        level="town",
        addressed_to="330110001",
        unit_id="U-TOWN-330110001",
    ),
    supervision.CaseUrged(urged_by="supervisor-7", note="请尽快办理", unit_id="U-TOWN-330110001"),
    supervision.ExtensionDecided(
        request_event_id=SAMPLE_CORRELATION_ID,
        approved=True,
        decided_by="supervisor-7",
        note="同意延期",
        due_at=SAMPLE_DUE,
    ),
    supervision.SlaProfileChanged(
        sla_profile="emergency", region_code="330110001", switch_event_id=SAMPLE_CORRELATION_ID
    ),
    supervision.RegionModeSwitched(
        region_code="330110001",
        region_level="town",
        mode=supervision.RegionMode.EMERGENCY,
        switched_by="supervisor-7",
        reason="防汛应急响应",
    ),
)


def sample_event(payload: EventPayload) -> Envelope:
    """The golden envelope of a payload: fixed ids and time, so the file never changes by itself."""
    return new_event(
        payload,
        case_id=SAMPLE_CASE_ID,
        actor=Actor(id="hotline-12345", role=ActorRole.SOURCE_SYSTEM),
        occurred_at=SAMPLE_TIME,
        correlation_id=SAMPLE_CORRELATION_ID,
        causation_id=deterministic_id(SAMPLE_CASE_ID, "cause"),
        event_id=deterministic_id(SAMPLE_CASE_ID, f"{payload.event_type}:v{payload.schema_version}"),
    )


def file_stem(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}"


def envelope_schema(payload_class: type[EventPayload]) -> dict[str, Any]:
    """The JSON Schema of the envelope carrying ``payload_class``."""
    schema = Envelope.model_json_schema()
    schema["title"] = f"{payload_class.event_type} v{payload_class.schema_version}"
    payload_schema = payload_class.model_json_schema()
    defs = {**schema.pop("$defs", {}), **payload_schema.pop("$defs", {})}
    schema["properties"]["type"] = {"const": payload_class.event_type}
    schema["properties"]["schema_version"] = {"const": payload_class.schema_version}
    schema["properties"]["producer"] = {"const": payload_class.producer.value}
    schema["properties"]["payload"] = payload_schema
    schema["$defs"] = defs
    return schema


def write_schemas(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for (event_type, version), payload_class in sorted(registered_payloads().items()):
        path = directory / f"{file_stem(event_type, version)}.schema.json"
        path.write_text(json.dumps(envelope_schema(payload_class), ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def write_samples(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for payload in SAMPLE_PAYLOADS:
        event = sample_event(payload)
        path = directory / f"{file_stem(event.type, event.schema_version)}.json"
        path.write_text(json.dumps(event.model_dump(mode="json"), ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schemas", type=Path, required=True)
    parser.add_argument("--samples", type=Path, required=True)
    args = parser.parse_args()
    write_schemas(args.schemas)
    write_samples(args.samples)


if __name__ == "__main__":
    main()
