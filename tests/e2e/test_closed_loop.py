"""The four services as processes, a real broker: cases round the whole loop over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from caseloop_deploy.stack import SERVICES, LocalStack
from caseloop_events.testing.broker import BrokerKind, free_port
from caseloop_events.testing.fixtures import create_postgres_database, drop_postgres_database
from tests.e2e.loop_driver import (
    Endpoints,
    assert_timeline_is_the_closed_loop,
    drive_cases_round_the_loop,
    new_client,
    settled_timeline,
)

pytestmark = pytest.mark.e2e


def a_stack(data_dir: Path, broker: BrokerKind) -> LocalStack:
    return LocalStack(data_dir, broker_kind=broker, ports={name: free_port() for name in SERVICES})


@pytest.fixture(scope="module", params=[BrokerKind.NOIDA, BrokerKind.TANSU])
def running_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with a_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param) as stack:
        yield stack


async def test_fifty_cases_close_and_each_timeline_is_the_causal_chain(running_stack: LocalStack) -> None:
    api = Endpoints.of(running_stack)
    case_ids = await drive_cases_round_the_loop(api, count=50, prefix=f"E2E-{running_stack.broker_kind}")
    assert len(set(case_ids)) == 50
    async with new_client() as client:
        closed = (await client.get(f"{api.supervision}/v1/cases", params={"status": "closed", "limit": 500})).json()
        assert {c["case_id"] for c in closed["items"]} >= set(case_ids)
        for case_id in case_ids:
            assert_timeline_is_the_closed_loop(await settled_timeline(client, api, case_id))


async def test_commands_that_do_not_fit_the_state_get_409_and_unknown_cases_404(running_stack: LocalStack) -> None:
    api = Endpoints.of(running_stack)
    async with new_client() as client:
        unknown = "00000000-0000-0000-0000-000000000001"
        assert (await client.get(f"{api.supervision}/v1/cases/{unknown}")).status_code == 404
        assert (
            await client.post(
                f"{api.dispatch}/v1/cases/{unknown}/acknowledge", json={"unit_id": "U-DISTRICT-COMMAND", "by": "x"}
            )
        ).status_code == 404
        case_ids = await drive_cases_round_the_loop(
            api, count=1, prefix=f"E2E-409-{running_stack.broker_kind}", grid_offset=1
        )
        again = await client.post(f"{api.supervision}/v1/cases/{case_ids[0]}/evaluation", json={"rating": "satisfied"})
        assert again.status_code == 409
        assert again.json()["rule"] == "NotAwaitingEvaluation"


def test_a_restart_keeps_every_case_and_new_cases_still_close(tmp_path: Path) -> None:
    stack = a_stack(tmp_path, BrokerKind.NOIDA)
    with stack:
        api = Endpoints.of(stack)
        before = asyncio.run(drive_cases_round_the_loop(api, count=5, prefix="E2E-RESTART-A"))
    # Same data folder, same ports: as a user running `make run` again.
    with stack:
        after = asyncio.run(drive_cases_round_the_loop(api, count=5, prefix="E2E-RESTART-B", grid_offset=1))
        asyncio.run(assert_every_timeline_is_the_closed_loop(api, before + after))


async def assert_every_timeline_is_the_closed_loop(api: Endpoints, case_ids: list[str]) -> None:
    async with new_client() as client:
        for case_id in case_ids:
            assert_timeline_is_the_closed_loop(await settled_timeline(client, api, case_id))


@pytest.mark.postgres
async def test_the_loop_closes_with_every_service_on_its_own_postgresql_database(
    tmp_path: Path, postgres_admin_url: str
) -> None:
    urls = {name: await create_postgres_database(postgres_admin_url, f"caseloop_e2e_{name}") for name in SERVICES}
    stack = LocalStack(
        tmp_path, broker_kind=BrokerKind.NOIDA, ports={name: free_port() for name in SERVICES}, database_urls=urls
    )
    try:
        await asyncio.to_thread(stack.start)
        api = Endpoints.of(stack)
        case_ids = await drive_cases_round_the_loop(api, count=10, prefix="E2E-PG")
        await assert_every_timeline_is_the_closed_loop(api, case_ids)
    finally:
        await asyncio.to_thread(stack.stop)
        for url in urls.values():
            await drop_postgres_database(postgres_admin_url, url)
    for name in SERVICES:
        assert "started: database postgresql" in stack.services[name].log_path.read_text(), f"{name} not on PostgreSQL"
