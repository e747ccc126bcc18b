"""supervision's settings, from SUPERVISION_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime import ServiceSettings


class SupervisionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SUPERVISION_", extra="ignore")
    service_name: ClassVar[str] = "supervision"
    port: int = 8004
