"""intake's settings, from INTAKE_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime import ServiceSettings


class IntakeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")
    service_name: ClassVar[str] = "intake"
    port: int = 8001
