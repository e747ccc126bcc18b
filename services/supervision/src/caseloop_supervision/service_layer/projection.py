"""supervision's projections: the case list (with each case's view), the links between cases, and
the mode of each region — brought in line with a stream's state once per unit of work."""

from __future__ import annotations

from collections.abc import Sequence

from caseloop_events.contracts.supervision import RegionModeSwitched
from caseloop_events.runtime.streams import Stream
from caseloop_supervision.adapters.tables import case_links, cases, region_modes
from caseloop_supervision.adapters.views import CaseView, case_view, queued_feedback
from caseloop_supervision.domain.clocks import next_notice_at
from caseloop_supervision.domain.model import SupervisedCase
from caseloop_supervision.service_layer.supervising import Work


def view_of(stream: Stream[SupervisedCase], uow: Work) -> CaseView:
    """The case's view: its state, and the feedback owed that no attempt has told of yet."""
    case = stream.state
    return case_view(case, uow.deps.rules.reference.escalation_ladder, queued_feedback(case, stream.events))


async def project(stream: Stream[SupervisedCase], uow: Work) -> None:
    """A region's stream projects its mode; a case's, its row in the case list and its link."""
    switches = [e for e in stream.events if isinstance(e.payload, RegionModeSwitched)]
    if switches:
        _project_region_mode(uow, switches[-1].payload, switches[-1].occurred_at, str(switches[-1].event_id))
        return
    case = stream.state
    view = view_of(stream, uow)
    running = view.deadline
    uow.put(
        cases,
        {
            "case_id": str(case.case_id),
            "case_no": case.case_no,
            "status": (case.status.value if case.status else "unknown"),
            "title": case.title,
            "source_system": case.source_system,
            "town_code": case.town_code,
            "village_code": case.village_code,
            "grid_code": case.grid_code,
            "category": case.category,
            "risk_level": case.risk_level,
            "unit_id": case.unit_id,
            "assisting_unit_ids": _as_members(case.assisting_unit_ids),
            "campaign_ids": _as_members(case.campaign_ids),
            "returns": case.returns,
            "holder_kind": view.holder.kind.value,
            "holder_id": view.holder.id,
            "accepted_at": case.stages.accepted_at,
            "awaiting_evaluation_since": case.awaiting_evaluation_since,
            "closed_at": case.stages.closed_at,
            "due_at": running.due_at if running is not None and running.counting else None,
            "notice_rung": view.notice.rung if view.notice is not None else None,
            "notice_level": view.notice.level if view.notice is not None else None,
            "next_notice_at": next_notice_at(case, uow.deps.rules),
            "sla_profile": case.sla_profile,
            "updated_at": case.last_event_at or uow.now(),
            "view": view.model_dump_json(),
        },
    )
    link = case.follows
    if link is not None:
        uow.put(
            case_links,
            {
                "follower_case_id": str(case.case_id),
                "original_case_id": str(link.original.case_id),
                "kind": link.kind.value,
                "active": True,
                "updated_at": uow.now(),
            },
        )
    elif case.was_linked:
        # Unlinked: the row goes, so a replay that folds the link and the unmerge in one go (and
        # never writes the row) leaves the same table as the live service did.
        uow.remove(case_links, follower_case_id=str(case.case_id))


def _project_region_mode(uow: Work, switched: object, at: object, event_id: str) -> None:
    assert isinstance(switched, RegionModeSwitched)
    uow.put(
        region_modes,
        {
            "region_code": switched.region_code,
            "region_level": switched.region_level,
            "mode": switched.mode.value,
            "switched_at": at,
            "switched_by": switched.switched_by,
            "switch_event_id": event_id,
        },
    )


def _as_members(ids: Sequence[str]) -> str:
    """``,A,B,``: each member between commas, so ``LIKE '%,A,%'`` finds exactly A."""
    return "," + "".join(f"{i}," for i in ids)
