"""triage's settings, from TRIAGE_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime import ServiceSettings


class TriageSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="ignore")
    service_name: ClassVar[str] = "triage"
    port: int = 8002
