"""Case reports the triage rules judge on their own: what the end-to-end tests and the benchmark
send, so both drive the same paths."""

from __future__ import annotations

#: (title, description, category or None) — a hotline's or a grid worker's words, in several categories.
REPORTS: tuple[tuple[str, str, str | None], ...] = (
    ("小区门口垃圾堆积", "垃圾三天没人清运，气味很大", None),
    ("路灯不亮", "晚上整条路的路灯都不亮，行人看不清", None),
    ("楼道堆放杂物", "高层住宅楼道堆满纸箱，消防通道被堵", "high_rise_fire"),
    ("邻里纠纷", "楼上楼下因为漏水吵架多次", "neighbour_dispute"),
    ("道路坑洼", "路面出现大坑，电动车容易摔倒", None),
    ("Noise at night", "construction noise after midnight every day", "noise"),
)
