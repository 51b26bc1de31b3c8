"""The gateway's config.json for the demo: the scripted model, one virtual key, and the notes service.

- Provider ``demo`` (OpenAI-compatible, at the scripted model) with the alias ``demo-model``.
- Virtual key ``demo``: may use that provider and every notes tool, and may assert end-user ids
  (``X-Bf-User-Id``), so one key can speak for alice and for bob on the LLM gateway.
- MCP server ``notes``: ``per_user_oauth`` (each user signs in to notes themselves), every tool
  runnable by agent mode, so a chat completion that asks for a notes tool gets its result.
- Per-user OAuth lets a user type their id on the consent page (``allow_self_declared_user_ids``):
  the demo has no single sign-on. Inference needs a virtual key.
"""

from __future__ import annotations

from typing import Any

from heimdall.demo.scripted_model import MODEL_ID

__all__ = ["MODEL_ALIAS", "NOTES_CLIENT_ID", "NOTES_NAME", "PROVIDER", "demo_config"]

PROVIDER = "demo"
MODEL_ALIAS = "demo-model"
NOTES_NAME = "notes"
NOTES_CLIENT_ID = "demo-notes"
VK_ID = "vk-demo"


def demo_config(*, model_url: str, notes_mcp_url: str, virtual_key: str) -> dict[str, Any]:
    """config.json contents pointing at the running scripted model and notes service."""
    return {
        "client": {"enforce_auth_on_inference": True},
        "per_user_oauth": {"allow_self_declared_user_ids": True},
        "providers": {
            PROVIDER: {
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": model_url, "max_retries": 0},
                "keys": [
                    {
                        "name": "scripted",
                        "value": "sk-demo-scripted-model",
                        "models": ["*"],
                        "aliases": {MODEL_ALIAS: MODEL_ID},
                    }
                ],
            }
        },
        "governance": {
            "virtual_keys": [
                {
                    "id": VK_ID,
                    "name": "demo",
                    "value": virtual_key,
                    "description": "heimdall demo: the scripted model and the notes tools",
                    "can_assert_user_ids": True,
                    "provider_configs": [{"provider": PROVIDER, "allowed_models": ["*"], "key_ids": ["*"]}],
                    "mcp_configs": [{"mcp_client_name": NOTES_NAME, "tools_to_execute": ["*"]}],
                }
            ]
        },
        "mcp": {
            "client_configs": [
                {
                    "client_id": NOTES_CLIENT_ID,
                    "name": NOTES_NAME,
                    "connection_type": "http",
                    "connection_string": notes_mcp_url,
                    "auth_type": "per_user_oauth",
                    "oauth_config": {},
                    "tools_to_execute": ["*"],
                    "tools_to_auto_execute": ["*"],
                }
            ]
        },
    }
