"""dispatch's settings, from DISPATCH_* environment variables (and the shared CASELOOP_* ones)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from caseloop_events.runtime.service import ServiceSettings


class DispatchSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCH_", extra="ignore")
    service_name: ClassVar[str] = "dispatch"
    port: int = 8003
    return_limit: int = Field(default=2, ge=1, le=20, description="returns after which the fallback owner takes a case")
    transfer_limit: int = Field(default=3, ge=0, le=20, description="transfers a case may have")
    rework_limit: int = Field(
        default=2,
        ge=0,
        le=20,
        description="failed verifications a unit may rework before the fallback owner takes over",
    )
    reopen_limit: int = Field(
        default=2, ge=0, le=20, description="reopenings sent back to the same unit before the fallback owner takes over"
    )
