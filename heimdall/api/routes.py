"""Assembles the management API, /health, /metrics and the documentation of the inference routes."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from heimdall.api import (
    config_routes,
    inference_docs,
    mcp_clients,
    oauth_routes,
    oauth_server_routes,
    providers,
    request_logs,
    virtual_keys,
)
from heimdall.api.deps import GatewayDep
from heimdall.oauth.oidc import routes as oidc_routes
from heimdall.oauth.per_user import routes as per_user_routes


def build_api_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health", tags=["operations"], summary="Liveness and store reachability")
    async def health(gateway: GatewayDep) -> dict[str, object]:
        return {"status": "ok", "store_version": gateway.snapshot.version}

    @router.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=Response)
    async def metrics(gateway: GatewayDep) -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    router.include_router(providers.router)
    router.include_router(virtual_keys.router)
    router.include_router(request_logs.router)
    router.include_router(mcp_clients.router)
    router.include_router(config_routes.router)
    router.include_router(inference_docs.router)
    router.include_router(oauth_routes.router)
    router.include_router(oauth_server_routes.router)
    router.include_router(oidc_routes.router)
    router.include_router(per_user_routes.router)
    return router
