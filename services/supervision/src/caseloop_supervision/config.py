"""supervision's settings, from SUPERVISION_* environment variables (and the shared CASELOOP_* ones)."""

from datetime import timedelta
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime.service import ServiceSettings
from caseloop_supervision.domain.feedback import FeedbackPolicy


class SupervisionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SUPERVISION_", extra="ignore")
    service_name: ClassVar[str] = "supervision"
    port: int = 8004
    timer_interval: float = Field(
        default=1.0, gt=0, description="seconds between two rounds of the auto-closure timer and of the deliveries"
    )
    evaluation_window: timedelta = Field(
        default=timedelta(hours=72),
        gt=timedelta(0),
        description="how long a verified case waits for the citizen's evaluation before it closes without one "
        "(ISO 8601 such as PT72H, or seconds)",
    )
    feedback_backoff: float = Field(default=5.0, gt=0, description="seconds before the first retry of a callback")
    feedback_backoff_cap: float = Field(default=3600.0, gt=0, description="the longest wait between two retries")
    feedback_max_attempts: int = Field(default=8, ge=1, description="attempts before supervision gives up")
    feedback_timeout: float = Field(default=5.0, gt=0, description="seconds one callback may take")

    @property
    def feedback_policy(self) -> FeedbackPolicy:
        return FeedbackPolicy(
            backoff_base=timedelta(seconds=self.feedback_backoff),
            backoff_cap=timedelta(seconds=self.feedback_backoff_cap),
            max_attempts=self.feedback_max_attempts,
        )
