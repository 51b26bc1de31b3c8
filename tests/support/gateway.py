"""Start a real Heimdall (uvicorn on 127.0.0.1, real store) for a test, and talk to it over HTTP."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from heimdall.app import create_app
from heimdall.settings import Settings
from tests.support.servers import ServerThread, free_port

ADMIN_TOKEN = "hk-admin-test-token"


@dataclass
class RunningGateway:
    url: str
    app_dir: Path
    server: ServerThread
    admin_token: str = ADMIN_TOKEN

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30, trust_env=False
        )

    def client(self, vk: str | None = None, **headers: str) -> httpx.Client:
        all_headers = dict(headers)
        if vk:
            all_headers["x-bf-vk"] = vk
        return httpx.Client(base_url=self.url, headers=all_headers, timeout=30, trust_env=False)

    def stop(self) -> None:
        self.server.stop()


def start_gateway(
    app_dir: Path,
    *,
    config: dict[str, Any] | None = None,
    db_url: str | None = None,
    **settings: Any,
) -> RunningGateway:
    app_dir.mkdir(parents=True, exist_ok=True)
    config_path = None
    if config is not None:
        config_path = app_dir / "config.json"
        config_path.write_text(json.dumps(config))
    # The port is chosen here so that Settings (and so the public URL in redirects) and the
    # listening socket agree.
    port = settings.pop("port", None) or free_port()
    values: dict[str, Any] = {
        "app_dir": app_dir,
        "port": port,
        "config": config_path,
        "db_url": db_url,
        "admin_token": ADMIN_TOKEN,
        "config_poll_seconds": 0.2,
        **settings,
    }
    app = create_app(Settings(**values))
    server = ServerThread(app, port=port, lifespan="on", http="httptools").start(timeout=30)
    return RunningGateway(url=server.url, app_dir=app_dir, server=server)
