"""``make bench`` in miniature: a few seconds of load on SQLite, then the report's shape and that
every figure it measured is there and positive (the real numbers come from ``make bench``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from caseloop_deploy.services import SERVICE_NAMES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TINY = [
    "--database", "sqlite",
    "--warmup-cases", "2",
    "--stored-events", "600",
    "--loop-seconds", "8",
    "--loop-concurrency", "4",
    "--intake-rate", "10",
    "--intake-seconds", "2",
    "--saturation-seconds", "2",
    "--saturation-concurrency", "4",
    "--query-requests", "10",
    "--settle-timeout", "20",
]  # fmt: skip


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    out = tmp_path_factory.mktemp("bench")
    finished = subprocess.run(
        [sys.executable, "-m", "caseloop_deploy.bench", *TINY, "--output-dir", str(out)],
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    return json.loads((folder / "report.json").read_text()), folder, finished.stdout


def test_writes_the_report_the_plot_and_a_table(bench: tuple[dict[str, Any], Path, str]) -> None:
    report, folder, stdout = bench
    assert set(report) >= {"started_at", "finished_at", "wall_seconds", "machine", "options", "runs", "targets"}
    assert list(report["runs"]) == ["sqlite"]
    assert (folder / "bench.png").read_bytes().startswith(b"\x89PNG")
    assert "intake POST p50/p95/p99 ms" in stdout
    assert "timeline p50/p99 ms" in stdout
    assert "per closed case: DB round trips" in stdout
    assert "per closed case: CPU ms machine/-driver/services/driver" in stdout
    assert not list(folder.glob("data-*")), "the run's data is removed after it"
    assert {t["database"] for t in report["targets"]} == {"sqlite"}
    assert len(report["targets"]) == 7
    per_case = [t for t in report["targets"] if "per closed case" in t["target"]]
    assert len(per_case) == 3
    assert all(positive(t["measured"]) and t["met"] is not None for t in per_case), per_case


def test_intake_the_loop_and_the_queries_are_measured(bench: tuple[dict[str, Any], Path, str]) -> None:
    run = bench[0]["runs"]["sqlite"]
    for phase in ("fixed_rate", "saturation"):
        intake = run["intake"][phase]
        assert positive(intake["accepted"]), intake
        assert positive(intake["accepted_per_second"]), intake
        assert all(positive(intake["latency_ms"][q]) for q in ("p50", "p95", "p99")), intake
    assert run["intake"]["fixed_rate"]["offered_per_second"] == 10
    loop = run["loop"]
    assert positive(loop["closed"]), loop
    assert positive(loop["closed_per_second"]), loop
    for latency in ("post_to_assignment", "post_to_closure"):
        assert positive(loop["latency_ms"][latency]["p50"])
        assert positive(loop["latency_ms"][latency]["p99"])
    assert loop["latency_ms"]["post_to_assignment"]["p50"] < loop["latency_ms"]["post_to_closure"]["p50"]
    for query in ("timeline", "case_list"):
        assert positive(run["queries"][query]["requests"])
        assert positive(run["queries"][query]["latency_ms"]["p50"])
        assert positive(run["queries"][query]["latency_ms"]["p99"])
    assert run["queries"]["timeline"]["events_per_timeline_mean"] >= 8


def test_what_a_closed_case_costs_is_reported(bench: tuple[dict[str, Any], Path, str]) -> None:
    loop = bench[0]["runs"]["sqlite"]["loop"]
    each = loop["per_closed_case"]
    assert each["closed"] == loop["closed"]
    # Every service writes to its database and talks to the broker for the cases it moves on.
    assert positive(each["database_round_trips"]), each
    assert positive(each["broker_requests"]), each
    assert set(each["database_round_trips_by_service"]) == set(SERVICE_NAMES)
    assert all(positive(v) for v in each["database_round_trips_by_service"].values()), each
    assert all(positive(v) for v in each["broker_requests_by_service"].values()), each
    assert positive(each["bench_log_reader_broker_requests"]), each
    cpu = each["cpu_ms"]
    for name in ("machine", "machine_without_driver", "services", "driver", *SERVICE_NAMES):
        assert positive(cpu[name]), (name, cpu)
    assert cpu["machine_without_driver"] < cpu["machine"]
    assert abs(cpu["machine"] - cpu["machine_without_driver"] - cpu["driver"]) < 0.05
    # The services' CPU is part of the machine's (a little slack: the two are read a moment apart).
    assert cpu["services"] <= cpu["machine_without_driver"] * 1.1, cpu


def test_stored_events_rebuild_resources_and_lag_are_reported(bench: tuple[dict[str, Any], Path, str]) -> None:
    run = bench[0]["runs"]["sqlite"]
    stored = run["stored_events"]
    assert stored["preloaded_into_supervision"] >= 600
    assert stored["supervision_case_log"] >= stored["preloaded_into_supervision"]
    assert positive(stored["log_records"])
    for name in SERVICE_NAMES:
        assert positive(run["rebuild"][name]["records"])
        assert positive(run["rebuild"][name]["events_per_second"])
        assert name in run["consumer_lag"]
        assert run["consumer_lag"][name]["samples"]
    for name in (*SERVICE_NAMES, "broker", "bench"):
        assert positive(run["resources"][name]["cpu_seconds"]), name
        assert positive(run["resources"][name]["peak_rss_mb"]), name
    assert [p["name"] for p in run["phases"]] == ["loop", "settle", "queries", "intake_fixed_rate", "intake_saturation"]
    assert positive(run["series"]["closure"][-1]["t"])
