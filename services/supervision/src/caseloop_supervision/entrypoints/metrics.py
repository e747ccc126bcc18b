"""What supervision adds to its ``/metrics``: the figures a command centre watches, by town — the
cases still in the loop, those past their deadline and those escalated to the town or the district
(DESIGN.md §4a, ADR 0017). Read from the case list at each scrape, one grouped query."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from caseloop_events.contracts.clock import Clock
from caseloop_events.contracts.reference import ReferenceData
from caseloop_events.runtime.metrics import MetricsCollector
from caseloop_supervision.adapters.store import TownCaseCounts
from caseloop_supervision.service_layer.supervising import SupervisionReads

#: The town label of the cases located in no town of the reference region.
NO_TOWN = "none"


def cases_by_town(store: SupervisionReads, clock: Clock, reference: ReferenceData) -> MetricsCollector:
    """Open, overdue and escalated cases of every town of the region (0 where it has none, so a
    dashboard shows every town and a rate over a town that emptied does not break off)."""
    names = {town.code: town.name for town in reference.towns}

    async def collect() -> Iterable[Metric]:
        counted = {counts.town_code: counts for counts in await store.case_counts_by_town(clock.now())}
        towns = [*names, *sorted(code for code in counted if code is not None and code not in names)]
        rows = [counted.get(code) or TownCaseCounts(code, 0, 0, 0) for code in towns]
        if None in counted:
            rows.append(counted[None])
        families = {
            "open": GaugeMetricFamily(
                "caseloop_cases_open", "Cases that have not left the loop, by town.", labels=["town", "town_name"]
            ),
            "overdue": GaugeMetricFamily(
                "caseloop_cases_overdue",
                "Open cases whose counting clock is past its deadline (超期), by town.",
                labels=["town", "town_name"],
            ),
            "escalated": GaugeMetricFamily(
                "caseloop_cases_escalated",
                "Open cases whose supervision notice went up to the town or the district (黄牌, 红牌), by town.",
                labels=["town", "town_name"],
            ),
        }
        for counts in rows:
            town = counts.town_code or NO_TOWN
            labels = [town, names.get(town, "")]
            families["open"].add_metric(labels, counts.open)
            families["overdue"].add_metric(labels, counts.overdue)
            families["escalated"].add_metric(labels, counts.escalated)
        return families.values()

    return collect
