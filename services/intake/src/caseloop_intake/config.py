"""intake's settings, from INTAKE_* environment variables (and the shared CASELOOP_* ones)."""

from datetime import timedelta
from typing import ClassVar

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime.service import ServiceSettings
from caseloop_intake.domain.screening import ScreeningRules


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")
    service_name: ClassVar[str] = "intake"
    port: int = 8001

    # Screening keywords are data: a list (JSON in the environment), matched case-insensitively
    # anywhere in the title or description.
    test_markers: tuple[str, ...] = ("测试", "请忽略", "勿处理", "ceshi", "test case", "this is a test")
    #: Phrases that say nothing: a report whose title and description are each one of these (or
    #: one character repeated) has no actionable content, however long.
    filler_phrases: tuple[str, ...] = (
        "无",
        "没有",
        "暂无",
        "不详",
        "不知道",
        "同上",
        "如题",
        "见标题",
        "详见标题",
        "n/a",
        "none",
        "null",
        "nil",
        "tbd",
        "asdf",
    )
    #: Letters and digits (any script) the title and description must carry together.
    min_meaningful_chars: int = Field(default=4, ge=1)
    #: How long an accepted case draws probable duplicates of itself (ISO 8601 or seconds).
    duplicate_window: timedelta = timedelta(hours=72)
    #: Character-bigram Dice similarity at or above which a report repeats an earlier one.
    duplicate_similarity: float = Field(default=0.5, gt=0, le=1)

    #: How long an answered Idempotency-Key is kept (the IETF draft asks for 24 hours at least).
    idempotency_retention: timedelta = Field(default=timedelta(hours=48), ge=timedelta(hours=24))
    #: Seconds between two rounds of forgetting expired idempotency keys.
    idempotency_cleanup_interval: float = Field(default=600.0, gt=0)

    @field_validator("duplicate_window")
    @classmethod
    def _positive_window(cls, window: timedelta) -> timedelta:
        if window <= timedelta(0):
            raise ValueError("the duplicate window must be longer than zero")
        return window

    @property
    def screening_rules(self) -> ScreeningRules:
        return ScreeningRules(
            test_markers=self.test_markers,
            filler_phrases=self.filler_phrases,
            min_meaningful_chars=self.min_meaningful_chars,
            duplicate_window=self.duplicate_window,
            duplicate_similarity=self.duplicate_similarity,
        )
