"""What ``make bench`` makes of its measurements: percentiles, per-second series, the issue's
targets, the short table it prints and the plot it draws next to ``report.json``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float], unit: str = "ms") -> dict[str, float | int | None]:
    """Count, mean, p50, p95, p99 and max of latencies given in seconds, in ``unit`` (ms or s)."""
    scale = 1000.0 if unit == "ms" else 1.0
    if not seconds:
        return {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    return {
        "count": len(seconds),
        "mean": round(sum(seconds) / len(seconds) * scale, 2),
        "p50": round(percentile(seconds, 50) * scale, 2),
        "p95": round(percentile(seconds, 95) * scale, 2),
        "p99": round(percentile(seconds, 99) * scale, 2),
        "max": round(max(seconds) * scale, 2),
    }


@dataclass(frozen=True)
class Timed:
    """Something that happened ``at`` seconds after the run started, and how long it took."""

    at: float
    seconds: float


def per_second(events: Iterable[Timed], start: float, end: float) -> list[dict[str, float | int | None]]:
    """For each whole second between ``start`` and ``end``: how many happened, and their p50/p99 (ms)."""
    buckets: dict[int, list[float]] = {}
    for event in events:
        if start <= event.at < end:
            buckets.setdefault(int(event.at - start), []).append(event.seconds)
    rows: list[dict[str, float | int | None]] = []
    for second in range(math.ceil(end - start)):
        values = buckets.get(second, [])
        rows.append(
            {
                "t": round(start + second, 1),
                "count": len(values),
                "p50_ms": round(percentile(values, 50) * 1000, 1) if values else None,
                "p99_ms": round(percentile(values, 99) * 1000, 1) if values else None,
            }
        )
    return rows


# ------------------------------------------------------------------------------------------ targets

#: The targets of issue 7 on this 2-core machine with everything on it.
TARGET_CLOSED_PER_SECOND = 100.0
TARGET_INTAKE_RATE = 200.0
TARGET_INTAKE_P99_MS = 50.0
TARGET_TIMELINE_P99_MS = 20.0
TARGET_TIMELINE_EVENTS = 1_000_000
TARGET_REBUILD_EVENTS_PER_SECOND = 20_000.0
#: What one closed case may cost (issue 16): the services' database round trips and broker requests,
#: and the machine's CPU without the bench's own.
TARGET_ROUND_TRIPS_PER_CLOSED_CASE = 30.0
TARGET_BROKER_REQUESTS_PER_CLOSED_CASE = 10.0
TARGET_CPU_MS_PER_CLOSED_CASE = 20.0


def _get(report: Mapping[str, Any], *path: str) -> Any:
    value: Any = report
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def evaluate_targets(runs: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each target of the issue against each run: measured, met, and under what conditions it was
    measured (a target measured at other conditions than the issue's is ``met: null``)."""
    results: list[dict[str, Any]] = []
    for kind, run in runs.items():
        closed = _get(run, "loop", "closed_per_second_steady")
        results.append(
            {
                "database": kind,
                "target": f"closed cases/s sustained >= {TARGET_CLOSED_PER_SECOND:g} (on PostgreSQL)",
                "measured": closed,
                "conditions": f"{_get(run, 'loop', 'seconds')} s, {_get(run, 'loop', 'concurrency')} cases in flight",
                "met": None if closed is None else closed >= TARGET_CLOSED_PER_SECOND,
                "factor_short": _short_by(closed, TARGET_CLOSED_PER_SECOND, higher_is_better=True),
            }
        )
        rate = _get(run, "intake", "fixed_rate", "offered_per_second")
        p99 = _get(run, "intake", "fixed_rate", "latency_ms", "p99")
        results.append(
            {
                "database": kind,
                "target": f"intake POST p99 < {TARGET_INTAKE_P99_MS:g} ms at {TARGET_INTAKE_RATE:g} cases/s",
                "measured": p99,
                "conditions": f"offered {rate} cases/s",
                "met": None if p99 is None or rate is None or rate < TARGET_INTAKE_RATE else p99 < TARGET_INTAKE_P99_MS,
                "factor_short": _short_by(p99, TARGET_INTAKE_P99_MS, higher_is_better=False),
            }
        )
        stored = _get(run, "stored_events", "supervision_case_log")
        timeline = _get(run, "queries", "timeline", "latency_ms", "p99")
        results.append(
            {
                "database": kind,
                "target": f"timeline p99 < {TARGET_TIMELINE_P99_MS:g} ms with {TARGET_TIMELINE_EVENTS:,} events stored",
                "measured": timeline,
                "conditions": f"{stored:,} events stored" if isinstance(stored, int) else "",
                "met": None
                if timeline is None or not isinstance(stored, int) or stored < TARGET_TIMELINE_EVENTS
                else timeline < TARGET_TIMELINE_P99_MS,
                "factor_short": _short_by(timeline, TARGET_TIMELINE_P99_MS, higher_is_better=False),
            }
        )
        rebuild = _get(run, "rebuild") or {}
        rates = [r["events_per_second"] for r in rebuild.values() if isinstance(r, Mapping) and r.get("records")]
        slowest = min(rates) if rates else None
        results.append(
            {
                "database": kind,
                "target": f"rebuild >= {TARGET_REBUILD_EVENTS_PER_SECOND:,.0f} events/s (slowest service)",
                "measured": slowest,
                "conditions": ", ".join(
                    f"{name} {r.get('records', 0):,} records" for name, r in rebuild.items() if isinstance(r, Mapping)
                ),
                "met": None if slowest is None else slowest >= TARGET_REBUILD_EVENTS_PER_SECOND,
                "factor_short": _short_by(slowest, TARGET_REBUILD_EVENTS_PER_SECOND, higher_is_better=True),
            }
        )
        results.extend(_per_closed_case_targets(kind, run))
    return results


def _per_closed_case_targets(kind: str, run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The loop phase's costs per closed case against their targets (lower is better)."""
    each = _get(run, "loop", "per_closed_case") or {}
    conditions = (
        f"loop phase, {_fmt(each.get('closed'))} cases closed in {_fmt(each.get('seconds'))} s, "
        f"{_get(run, 'loop', 'concurrency')} in flight"
    )
    cpu = each.get("cpu_ms") or {}
    measured = (
        (
            f"database round trips per closed case <= {TARGET_ROUND_TRIPS_PER_CLOSED_CASE:g} (the four services)",
            each.get("database_round_trips"),
            TARGET_ROUND_TRIPS_PER_CLOSED_CASE,
            conditions,
        ),
        (
            f"broker requests per closed case <= {TARGET_BROKER_REQUESTS_PER_CLOSED_CASE:g} (the four services)",
            each.get("broker_requests"),
            TARGET_BROKER_REQUESTS_PER_CLOSED_CASE,
            f"{conditions}; the bench's log reader {_fmt(each.get('bench_log_reader_broker_requests'), 2)} apart",
        ),
        (
            f"CPU per closed case <= {TARGET_CPU_MS_PER_CLOSED_CASE:g} ms (whole machine, the bench's driver excluded)",
            cpu.get("machine_without_driver"),
            TARGET_CPU_MS_PER_CLOSED_CASE,
            f"{conditions}; with the driver {_fmt(cpu.get('machine'))} ms, the driver {_fmt(cpu.get('driver'))} ms, "
            f"the services {_fmt(cpu.get('services'))} ms, other processes {_fmt(cpu.get('other_processes'))} ms",
        ),
    )
    return [
        {
            "database": kind,
            "target": target,
            "measured": value,
            "conditions": where,
            "met": None if value is None else value <= limit,
            "factor_short": _short_by(value, limit, higher_is_better=False),
        }
        for target, value, limit, where in measured
    ]


def _short_by(measured: float | None, target: float, *, higher_is_better: bool) -> float | None:
    """How many times better the measurement must get to meet the target (1.0 or less: met)."""
    if measured is None or measured <= 0:
        return None
    return round(target / measured if higher_is_better else measured / target, 2)


# -------------------------------------------------------------------------------------------- table


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _triple(summary: Mapping[str, Any] | None, keys: tuple[str, ...] = ("p50", "p95", "p99"), digits: int = 1) -> str:
    if not summary or not summary.get("count"):
        return "-"
    return " / ".join(_fmt(summary.get(key), digits) for key in keys)


def render_table(report: Mapping[str, Any]) -> str:
    """The short table ``make bench`` prints: one column per database kind."""
    runs: Mapping[str, Mapping[str, Any]] = report["runs"]
    kinds = list(runs)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, cell: Any) -> None:
        rows.append((label, [cell(runs[kind]) for kind in kinds]))

    row("stored events (supervision case log)", lambda r: _fmt(_get(r, "stored_events", "supervision_case_log")))
    row("records on the topics", lambda r: _fmt(_get(r, "stored_events", "log_records")))
    row(
        "intake offered / accepted cases/s",
        lambda r: (
            f"{_fmt(_get(r, 'intake', 'fixed_rate', 'offered_per_second'), 0)} / "
            f"{_fmt(_get(r, 'intake', 'fixed_rate', 'accepted_per_second'))}"
        ),
    )
    row("intake POST p50/p95/p99 ms", lambda r: _triple(_get(r, "intake", "fixed_rate", "latency_ms")))
    row("intake saturation cases/s", lambda r: _fmt(_get(r, "intake", "saturation", "accepted_per_second")))
    row("intake saturation p50/p95/p99 ms", lambda r: _triple(_get(r, "intake", "saturation", "latency_ms")))
    row(
        "loop closed cases/s (steady / all)",
        lambda r: (
            f"{_fmt(_get(r, 'loop', 'closed_per_second_steady'), 2)} / {_fmt(_get(r, 'loop', 'closed_per_second'), 2)}"
        ),
    )
    row(
        "loop cases closed / failed", lambda r: f"{_fmt(_get(r, 'loop', 'closed'))} / {_fmt(_get(r, 'loop', 'failed'))}"
    )
    row(
        "POST->assignment p50/p99 ms",
        lambda r: _triple(_get(r, "loop", "latency_ms", "post_to_assignment"), ("p50", "p99"), 0),
    )
    row(
        "POST->closure p50/p99 ms",
        lambda r: _triple(_get(r, "loop", "latency_ms", "post_to_closure"), ("p50", "p99"), 0),
    )
    row(
        "per closed case: DB round trips",
        lambda r: _fmt(_get(r, "loop", "per_closed_case", "database_round_trips")),
    )
    row(
        "per closed case: broker requests (bench's)",
        lambda r: (
            f"{_fmt(_get(r, 'loop', 'per_closed_case', 'broker_requests'))} "
            f"({_fmt(_get(r, 'loop', 'per_closed_case', 'bench_log_reader_broker_requests'), 2)})"
        ),
    )
    row(
        "per closed case: CPU ms machine/-driver/services/driver",
        lambda r: " / ".join(
            _fmt(_get(r, "loop", "per_closed_case", "cpu_ms", name))
            for name in ("machine", "machine_without_driver", "services", "driver")
        ),
    )
    row(
        "max consumer lag (records)",
        lambda r: " ".join(f"{name[:3]}={_fmt(v.get('max'))}" for name, v in (_get(r, "consumer_lag") or {}).items()),
    )
    row("timeline p50/p99 ms", lambda r: _triple(_get(r, "queries", "timeline", "latency_ms"), ("p50", "p99")))
    row("case list p50/p99 ms", lambda r: _triple(_get(r, "queries", "case_list", "latency_ms"), ("p50", "p99")))
    row(
        "rebuild events/s int/tri/dis/sup",
        lambda r: " / ".join(
            _fmt(_get(r, "rebuild", name, "events_per_second"), 0)
            for name in ("intake", "triage", "dispatch", "supervision")
        ),
    )
    row(
        "CPU s int/tri/dis/sup/broker",
        lambda r: " / ".join(
            _fmt(_get(r, "resources", name, "cpu_seconds"), 0)
            for name in ("intake", "triage", "dispatch", "supervision", "broker")
        ),
    )
    row(
        "peak RSS MB int/tri/dis/sup/broker",
        lambda r: " / ".join(
            _fmt(_get(r, "resources", name, "peak_rss_mb"), 0)
            for name in ("intake", "triage", "dispatch", "supervision", "broker")
        ),
    )
    row(
        "machine busy % (others' CPU s)",
        lambda r: (
            f"{_fmt(_get(r, 'resources', 'machine', 'busy_percent'), 0)} "
            f"({_fmt(_get(r, 'resources', 'machine', 'other_processes_cpu_seconds'), 0)})"
        ),
    )
    width = max(len(label) for label, _ in rows)
    columns = [max(len(kind), *(len(cells[i]) for _, cells in rows)) for i, kind in enumerate(kinds)]
    lines = [" " * width + "  " + "  ".join(kind.rjust(columns[i]) for i, kind in enumerate(kinds))]
    for label, cells in rows:
        lines.append(label.ljust(width) + "  " + "  ".join(cell.rjust(columns[i]) for i, cell in enumerate(cells)))
    lines.append("")
    for target in report.get("targets", []):
        met = {True: "met", False: "NOT met", None: "not measured at the issue's conditions"}[target["met"]]
        lines.append(
            f"{target['database']:>10}  {target['target']}: {_fmt(target['measured'])} ({target['conditions']}) - {met}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- plot


def draw_plot(report: Mapping[str, Any], path: Path) -> None:
    """Throughput, latency and consumer lag over time, one column per database kind (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: Mapping[str, Mapping[str, Any]] = report["runs"]
    kinds = list(runs)
    figure, axes = plt.subplots(3, len(kinds), figsize=(7.5 * len(kinds), 10), squeeze=False, sharex="col")
    for column, kind in enumerate(kinds):
        run = runs[kind]
        series = run.get("series", {})
        throughput, latency, lag = axes[0][column], axes[1][column], axes[2][column]
        for name, label in (("closure", "closed cases/s (loop)"), ("intake", "accepted cases/s (every POST)")):
            rows = series.get(name, [])
            throughput.plot([r["t"] for r in rows], [r["count"] for r in rows], label=label, linewidth=1)
        throughput.set_title(f"{kind}: throughput")
        throughput.set_ylabel("per second")
        throughput.legend(loc="center left", fontsize=8)
        for name, label in (
            ("intake", "intake POST"),
            ("closure", "POST->closure"),
            ("assignment", "POST->assignment"),
        ):
            rows = [r for r in series.get(name, []) if r.get("p99_ms") is not None]
            if rows:
                latency.plot([r["t"] for r in rows], [r["p50_ms"] for r in rows], label=f"{label} p50", linewidth=1)
                latency.plot(
                    [r["t"] for r in rows],
                    [r["p99_ms"] for r in rows],
                    label=f"{label} p99",
                    linewidth=1,
                    linestyle=":",
                )
        latency.set_yscale("log")
        latency.set_title(f"{kind}: latency (per second)")
        latency.set_ylabel("ms")
        latency.legend(loc="upper left", fontsize=7, ncol=2)
        for name, samples in (run.get("consumer_lag") or {}).items():
            points = [s for s in samples.get("samples", []) if s[1] is not None]
            lag.plot([s[0] for s in points], [s[1] for s in points], label=name, linewidth=1)
        lag.set_title(f"{kind}: consumer lag (records behind, from /healthz)")
        lag.set_ylabel("records")
        lag.set_xlabel("seconds since the stack started (the warm-up and the pre-load before the first phase)")
        lag.legend(loc="upper left", fontsize=8)
        # The measured phases only (the warm-up and the pre-load come before them), each shaded and named.
        phases = run.get("phases", [])
        for axis in (throughput, latency, lag):
            for n, phase in enumerate(phases):
                axis.axvspan(phase["start"], phase["end"], alpha=0.10 if n % 2 == 0 else 0.04, color="tab:gray")
            if phases:
                axis.set_xlim(phases[0]["start"] - 5, phases[-1]["end"] + 5)
            axis.grid(True, alpha=0.3)
        for phase in phases:
            throughput.annotate(
                phase["name"],
                (phase["start"], 0.98),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                va="top",
                rotation=90,
                color="dimgray",
            )
    figure.suptitle(f"caseloop bench {report.get('started_at', '')}", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
