"""Runs a service's FastAPI app with uvicorn, logging to stderr."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from caseloop_events.runtime import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s {settings.service_name} %(levelname)s %(name)s: %(message)s",
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False)
