"""The web UI's routes: every section's router, its exception handlers, none in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from heimdall.ui import guard
from heimdall.ui.pages import connected_services, home, logs, mcp_servers, providers, virtual_keys


def build_ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(home.router)
    router.include_router(mcp_servers.router)
    router.include_router(providers.router)
    router.include_router(virtual_keys.router)
    router.include_router(connected_services.router)
    router.include_router(logs.router)
    return router


def install(app: FastAPI) -> None:
    guard.install(app)
    app.include_router(build_ui_router())
