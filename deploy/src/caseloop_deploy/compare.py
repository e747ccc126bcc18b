"""Compare a service's projections in two databases, row by row, column by column."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from caseloop_deploy.databases import connected, read_rows
from caseloop_deploy.services import ServiceSpec


class DifferenceKind(StrEnum):
    MISSING_FROM_SHADOW = "missing_from_shadow"
    ONLY_IN_SHADOW = "only_in_shadow"
    DIFFERS = "differs"


@dataclass(frozen=True)
class Difference:
    table: str
    key: Mapping[str, Any]
    kind: DifferenceKind
    #: column → (live value, shadow value), for rows that differ.
    columns: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        if self.kind is DifferenceKind.MISSING_FROM_SHADOW:
            return f"{self.table} [{key}]: in the live database only"
        if self.kind is DifferenceKind.ONLY_IN_SHADOW:
            return f"{self.table} [{key}]: in the shadow only"
        changes = "; ".join(
            f"{name}: live {_short(live)} / shadow {_short(shadow)}" for name, (live, shadow) in self.columns.items()
        )
        return f"{self.table} [{key}]: {changes}"

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": {k: str(v) for k, v in self.key.items()},
            "kind": self.kind.value,
            "columns": {c: [_jsonable(live), _jsonable(shadow)] for c, (live, shadow) in self.columns.items()},
        }


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


async def compare_projections(spec: ServiceSpec, live_url: str, shadow_url: str) -> list[Difference]:
    """Every difference between the live and the shadow projections of ``spec`` (columns the
    service declares as legitimately different are left out)."""
    differences: list[Difference] = []
    async with connected(live_url) as live, connected(shadow_url) as shadow:
        for name, ignored in spec.projections.items():
            table = spec.metadata.tables[name]
            key_columns = [c.name for c in table.primary_key.columns]
            compared = [c.name for c in table.columns if c.name not in ignored]
            live_rows = {_key(row, key_columns): row for row in await read_rows(live, spec.metadata, name)}
            shadow_rows = {_key(row, key_columns): row for row in await read_rows(shadow, spec.metadata, name)}
            for key in sorted(live_rows.keys() | shadow_rows.keys(), key=str):
                named_key = dict(zip(key_columns, key, strict=True))
                live_row, shadow_row = live_rows.get(key), shadow_rows.get(key)
                if shadow_row is None:
                    differences.append(Difference(name, named_key, DifferenceKind.MISSING_FROM_SHADOW))
                elif live_row is None:
                    differences.append(Difference(name, named_key, DifferenceKind.ONLY_IN_SHADOW))
                else:
                    changed = {c: (live_row[c], shadow_row[c]) for c in compared if live_row[c] != shadow_row[c]}
                    if changed:
                        differences.append(Difference(name, named_key, DifferenceKind.DIFFERS, changed))
    return differences


def _key(row: Mapping[str, Any], key_columns: list[str]) -> tuple[Any, ...]:
    return tuple(row[c] for c in key_columns)
