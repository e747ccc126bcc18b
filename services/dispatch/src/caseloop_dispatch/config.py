"""dispatch's settings, from DISPATCH_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime import ServiceSettings


class DispatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", extra="ignore")
    service_name: ClassVar[str] = "dispatch"
    port: int = 8003
