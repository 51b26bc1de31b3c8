"""Example configurations shared by tests."""

from __future__ import annotations

from typing import Any

#: The example of the spec's README ("config.json at a glance"), verbatim.
README_EXAMPLE: dict[str, Any] = {
    "providers": {
        "openai": {
            "keys": [
                {
                    "value": "env.OPENAI_API_KEY",
                    "models": ["*"],
                    "weight": 1.0,
                    "aliases": {"my-custom-alias": "gpt-4o-mini"},
                }
            ],
            "network_config": {
                "base_url": "https://api.openai.com",
                "default_request_timeout_in_seconds": 30,
                "max_retries": 1,
            },
        },
        "azure": {
            "keys": [
                {
                    "value": "env.AZURE_API_KEY",
                    "models": ["gpt-4o"],
                    "aliases": {"gpt-4o": "my-gpt4o-deployment"},
                    "azure_key_config": {"endpoint": "env.AZURE_ENDPOINT", "api_version": "2024-10-21"},
                }
            ]
        },
    },
    "governance": {
        "virtual_keys": [
            {
                "id": "vk-team-a",
                "name": "team-a",
                "value": "env.TEAM_A_VK",
                "is_active": True,
                "provider_configs": [{"provider": "openai", "allowed_models": ["*"], "key_ids": ["*"]}],
                "mcp_configs": [{"mcp_client_name": "notion", "tools_to_execute": ["*"]}],
            }
        ]
    },
    "mcp": {
        "client_configs": [
            {
                "name": "notion",
                "connection_type": "http",
                "connection_string": "https://mcp.notion.com/mcp",
                "auth_type": "per_user_oauth",
                "oauth_config": {"scopes": ["read"]},
                "tools_to_execute": ["*"],
            }
        ]
    },
    "client": {"enforce_auth_on_inference": False},
}
