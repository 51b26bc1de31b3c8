"""The web UI's routes: every section's router, its exception handlers, none in the OpenAPI document."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from heimdall.ui import guard
from heimdall.ui.pages import home


def build_ui_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)
    router.include_router(home.router)
    return router


def install(app: FastAPI) -> None:
    guard.install(app)
    app.include_router(build_ui_router())
