"""The JSON Schema of config.json, generated from the pydantic models (committed as docs/config.schema.json)."""

from __future__ import annotations

from typing import Any

from heimdall.config.model import GatewayConfig

SCHEMA_ID = "https://heimdall.dev/schemas/config.json"


def config_json_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
