"""triage's settings, from TRIAGE_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime.service import ServiceSettings


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")
    service_name: ClassVar[str] = "triage"
    port: int = 8002

    #: A rules judgment less confident than this goes to an officer's review queue instead
    #: (the default category's 0.3 does; a rule's 0.8 and the reporter's 1.0 do not).
    review_below_confidence: float = Field(default=0.5, ge=0, le=1)
