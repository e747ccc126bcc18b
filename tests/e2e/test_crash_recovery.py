"""Services killed (SIGKILL) while cases flow lose nothing and double nothing after restart."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from uuid import UUID

import pytest

from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.contracts.envelope import Producer
from caseloop_events.runtime.topics import topic_of
from caseloop_events.testing.broker import BrokerKind, free_port
from caseloop_events.testing.fixtures import read_events
from tests.e2e.loop_driver import (
    Endpoints,
    assert_timeline_is_the_closed_loop,
    close_case,
    grid_codes,
    new_client,
    report_case,
    settled_timeline,
)

pytestmark = pytest.mark.e2e


async def test_killing_triage_and_dispatch_mid_stream_loses_and_doubles_no_case(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path, broker_kind=BrokerKind.NOIDA, ports={name: free_port() for name in SERVICES})
    await asyncio.to_thread(stack.start)
    try:
        api = Endpoints.of(stack)
        async with new_client() as client:
            grids = await grid_codes(client, api, 40)
            first = await asyncio.gather(*(report_case(client, api, f"CRASH-{n:03d}", grids[n], n) for n in range(20)))
            # Killed while those 20 are being judged and assigned: no clean shutdown, no flush.
            stack.stop_service("triage", kill=True)
            stack.stop_service("dispatch", kill=True)
            # Screening goes on while they are down; the events wait in the log.
            second = [await report_case(client, api, f"CRASH-{n:03d}", grids[n], n) for n in range(20, 40)]
            stack.start_service("triage")
            stack.start_service("dispatch")
            await asyncio.to_thread(stack.wait_healthy, 60.0, ("triage", "dispatch"))
            case_ids = [c["case_id"] for c in first + second]
            await asyncio.gather(*(close_case(client, api, case_id) for case_id in case_ids))
            for case_id in case_ids:
                assert_timeline_is_the_closed_loop(await settled_timeline(client, api, case_id))

        assert stack.broker is not None
        assigned = await read_events(
            stack.broker.bootstrap_servers,
            topic_of(Producer.DISPATCH),
            until=lambda events: len({e.case_id for e in events if e.type == "case.assigned"}) >= len(case_ids),
        )
        assignments: dict[UUID, set[UUID]] = defaultdict(set)
        for event in assigned:
            if event.type == "case.assigned":
                assignments[event.case_id].add(event.event_id)
        assert {str(c) for c in assignments} == set(case_ids)
        assert all(len(ids) == 1 for ids in assignments.values()), "a case was assigned twice"
    finally:
        await asyncio.to_thread(stack.stop)
