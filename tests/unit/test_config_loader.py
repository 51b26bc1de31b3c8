"""config.json parsing: the reference shape, JSON-path errors, legacy conversion, version 1 and warnings."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from heimdall.config.loader import ConfigError, json_path, load_config_file, parse_config, resolve_env
from heimdall.config.model import provider_base_url, provider_kind
from tests.support.examples import README_EXAMPLE

MCP_URL = "https://mcp.example.com/mcp"

README_ENV = ("OPENAI_API_KEY", "AZURE_API_KEY", "AZURE_ENDPOINT", "TEAM_A_VK")


def openai_key(**fields: Any) -> dict[str, Any]:
    return {"value": "sk-test-1234567890", "models": ["*"], **fields}


def with_key(**fields: Any) -> dict[str, Any]:
    return {"providers": {"openai": {"keys": [openai_key(**fields)]}}}


def issues_of(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.json")
    assert info.value.source == "test.json"
    assert info.value.issues, "a ConfigError always lists its issues"
    return [str(issue) for issue in info.value.issues]


def only_issue(raw: Any) -> tuple[str, str]:
    issues = issues_of(raw)
    assert len(issues) == 1, issues
    path, _, message = issues[0].partition(": ")
    return path, message


# --- the reference shape ---------------------------------------------------------------------


def test_readme_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in README_ENV:
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    loaded = parse_config(copy.deepcopy(README_EXAMPLE), "config.json")
    config = loaded.config
    assert loaded.warnings == []

    openai = config.providers["openai"]
    assert provider_kind("openai", openai) == "openai"
    [key] = openai.keys
    assert key.value == "env.OPENAI_API_KEY"
    assert key.models == ["*"]
    assert key.weight == 1.0
    assert key.aliases == {"my-custom-alias": "gpt-4o-mini"}
    assert openai.network_config.base_url == "https://api.openai.com"
    assert openai.network_config.default_request_timeout_in_seconds == 30
    assert openai.network_config.max_retries == 1

    azure = config.providers["azure"]
    assert provider_kind("azure", azure) == "azure"
    [azure_key] = azure.keys
    assert azure_key.aliases == {"gpt-4o": "my-gpt4o-deployment"}
    assert azure_key.azure_key_config is not None
    assert azure_key.azure_key_config.endpoint == "env.AZURE_ENDPOINT"
    assert azure_key.azure_key_config.api_version == "2024-10-21"

    [vk] = config.governance.virtual_keys
    assert (vk.id, vk.name, vk.value, vk.is_active) == ("vk-team-a", "team-a", "env.TEAM_A_VK", True)
    assert vk.provider_configs[0].provider == "openai"
    assert vk.provider_configs[0].allowed_models == ["*"]
    assert vk.provider_configs[0].key_ids == ["*"]
    assert vk.mcp_configs[0].mcp_client_name == "notion"
    assert vk.mcp_configs[0].tools_to_execute == ["*"]

    [notion] = config.mcp.client_configs
    assert (notion.name, notion.auth_type, notion.tools_to_execute) == ("notion", "per_user_oauth", ["*"])
    assert config.client.enforce_auth_on_inference is False


def test_readme_example_warns_about_every_unset_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in README_ENV:
        monkeypatch.delenv(name, raising=False)
    warnings = parse_config(copy.deepcopy(README_EXAMPLE), "config.json").warnings
    assert "$.providers.openai.keys[0].value: environment variable OPENAI_API_KEY is not set" in warnings
    assert "$.providers.azure.keys[0].value: environment variable AZURE_API_KEY is not set" in warnings
    assert "$.governance.virtual_keys[0].value: environment variable TEAM_A_VK is not set" in warnings


def test_env_warning_disappears_once_the_variable_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEIMDALL_TEST_UNSET_KEY", raising=False)
    raw = with_key(value="env.HEIMDALL_TEST_UNSET_KEY")
    assert parse_config(copy.deepcopy(raw)).warnings == [
        "$.providers.openai.keys[0].value: environment variable HEIMDALL_TEST_UNSET_KEY is not set"
    ]
    monkeypatch.setenv("HEIMDALL_TEST_UNSET_KEY", "sk-from-env")
    assert parse_config(copy.deepcopy(raw)).warnings == []


def test_resolve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEIMDALL_TEST_RESOLVE", "secret")
    monkeypatch.delenv("HEIMDALL_TEST_MISSING", raising=False)
    assert resolve_env("env.HEIMDALL_TEST_RESOLVE") == "secret"
    assert resolve_env("env.HEIMDALL_TEST_MISSING") is None
    assert resolve_env("sk-literal") == "sk-literal"
    assert resolve_env("environment") == "environment"


def test_empty_file_is_a_valid_empty_config() -> None:
    loaded = parse_config({})
    assert loaded.config.providers == {}
    assert loaded.config.governance.virtual_keys == []
    assert loaded.config.client.enforce_auth_on_inference is False
    assert loaded.warnings == []


def test_mcp_clients_spelling_is_accepted() -> None:
    raw = {"mcp": {"mcp_clients": [{"name": "notion", "connection_type": "http", "connection_string": MCP_URL}]}}
    [client] = parse_config(raw).config.mcp.mcp_clients
    assert (client.name, client.connection_string) == ("notion", MCP_URL)


# --- JSON-path errors -------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Any, str, str]] = [
    (
        "alias with leading whitespace",
        with_key(aliases={" fast": "gpt-4o-mini"}),
        '$.providers.openai.keys[0].aliases[" fast"]',
        "no leading or trailing whitespace",
    ),
    (
        "alias with trailing whitespace",
        with_key(aliases={"fast ": "gpt-4o-mini"}),
        '$.providers.openai.keys[0].aliases["fast "]',
        "no leading or trailing whitespace",
    ),
    (
        "alias target with whitespace",
        with_key(aliases={"fast": "gpt-4o-mini\t"}),
        "$.providers.openai.keys[0].aliases.fast",
        "leading or trailing whitespace",
    ),
    (
        "empty alias name",
        with_key(aliases={"": "gpt-4o-mini"}),
        '$.providers.openai.keys[0].aliases[""]',
        "alias names must not be empty",
    ),
    (
        "empty alias target",
        with_key(aliases={"fast": ""}),
        "$.providers.openai.keys[0].aliases.fast",
        "non-empty string",
    ),
    (
        "alias target not a string",
        with_key(aliases={"fast": 4}),
        "$.providers.openai.keys[0].aliases.fast",
        "valid string",
    ),
    (
        "aliases not an object",
        with_key(aliases=["fast"]),
        "$.providers.openai.keys[0].aliases",
        "valid dictionary",
    ),
    (
        "duplicate alias, case-insensitively",
        with_key(aliases={"Fast": "gpt-4o-mini", "fast": "gpt-4o"}),
        "$.providers.openai.keys[0].aliases.fast",
        "duplicates 'Fast' (aliases are case-insensitive)",
    ),
    (
        "wildcard mixed with model names",
        with_key(models=["*", "gpt-4o"]),
        "$.providers.openai.keys[0].models",
        '"*" cannot be combined with other values',
    ),
    (
        "duplicate model in the allow-list",
        with_key(models=["gpt-4o", "gpt-4o"]),
        "$.providers.openai.keys[0].models",
        "duplicate entry 'gpt-4o'",
    ),
    (
        "empty model name",
        with_key(models=[" "]),
        "$.providers.openai.keys[0].models",
        "non-empty strings",
    ),
    (
        "duplicate allowed_models entry on a virtual key",
        {
            "governance": {
                "virtual_keys": [
                    {"name": "a", "provider_configs": [{"provider": "openai", "allowed_models": ["x", "x"]}]}
                ]
            }
        },
        "$.governance.virtual_keys[0].provider_configs[0].allowed_models",
        "duplicate entry 'x'",
    ),
    (
        "wildcard mixed into key_ids",
        {
            "governance": {
                "virtual_keys": [{"name": "a", "provider_configs": [{"provider": "openai", "key_ids": ["k1", "*"]}]}]
            }
        },
        "$.governance.virtual_keys[0].provider_configs[0].key_ids",
        '"*" cannot be combined',
    ),
    (
        "duplicate tools_to_execute entry",
        {
            "governance": {
                "virtual_keys": [
                    {"name": "a", "mcp_configs": [{"mcp_client_name": "n", "tools_to_execute": ["t", "t"]}]}
                ]
            }
        },
        "$.governance.virtual_keys[0].mcp_configs[0].tools_to_execute",
        "duplicate entry 't'",
    ),
    (
        "mcp config without a client",
        {"governance": {"virtual_keys": [{"name": "a", "mcp_configs": [{"tools_to_execute": ["*"]}]}]}},
        "$.governance.virtual_keys[0].mcp_configs[0]",
        "mcp_client_name or mcp_client_id is required",
    ),
    (
        "unknown provider without custom_provider_config",
        {"providers": {"acme": {"keys": [openai_key()]}}},
        "$.providers.acme.custom_provider_config",
        "not a built-in provider",
    ),
    (
        "unknown base_provider_type",
        {"providers": {"acme": {"custom_provider_config": {"base_provider_type": "bedrock"}}}},
        "$.providers.acme.custom_provider_config.base_provider_type",
        "Input should be",
    ),
    (
        "custom provider without a base_url",
        {"providers": {"acme": {"custom_provider_config": {"base_provider_type": "openai"}}}},
        "$.providers.acme.network_config.base_url",
        "needs a base_url",
    ),
    (
        "vllm has no default base_url",
        {"providers": {"vllm": {"keys": [openai_key()]}}},
        "$.providers.vllm.network_config.base_url",
        "needs a base_url",
    ),
    (
        "base_url with another scheme",
        {"providers": {"openai": {"network_config": {"base_url": "ftp://api.openai.com"}}}},
        "$.providers.openai.network_config.base_url",
        "base_url must be an http(s) URL",
    ),
    (
        "base_url without a host",
        {"providers": {"openai": {"network_config": {"base_url": "https://"}}}},
        "$.providers.openai.network_config.base_url",
        "base_url must be an http(s) URL",
    ),
    (
        "base_url not a URL",
        {"providers": {"openai": {"network_config": {"base_url": "api.openai.com"}}}},
        "$.providers.openai.network_config.base_url",
        "base_url must be an http(s) URL",
    ),
    (
        "timeout out of range",
        {"providers": {"openai": {"network_config": {"default_request_timeout_in_seconds": 0}}}},
        "$.providers.openai.network_config.default_request_timeout_in_seconds",
        "greater than 0",
    ),
    (
        "azure key without azure_key_config",
        {"providers": {"azure": {"keys": [openai_key()]}}},
        "$.providers.azure.keys[0].azure_key_config",
        "azure keys need azure_key_config.endpoint",
    ),
    (
        "azure_key_config without endpoint",
        {"providers": {"azure": {"keys": [openai_key(azure_key_config={"api_version": "2024-10-21"})]}}},
        "$.providers.azure.keys[0].azure_key_config.endpoint",
        "Field required",
    ),
    (
        "custom azure provider without azure_key_config",
        {"providers": {"myazure": {"custom_provider_config": {"base_provider_type": "azure"}, "keys": [openai_key()]}}},
        "$.providers.myazure.keys[0].azure_key_config",
        "azure keys need azure_key_config.endpoint",
    ),
    (
        "provider name with a hyphen",
        {
            "providers": {
                "my-openai": {
                    "custom_provider_config": {"base_provider_type": "openai"},
                    "network_config": {"base_url": "https://x.example"},
                }
            }
        },
        '$.providers["my-openai"]',
        "letters, digits",
    ),
    (
        "provider name too long",
        {
            "providers": {
                "p" * 65: {
                    "custom_provider_config": {"base_provider_type": "openai"},
                    "network_config": {"base_url": "https://x.example"},
                }
            }
        },
        f"$.providers.{'p' * 65}",
        "1-64",
    ),
    (
        "key without value",
        {"providers": {"openai": {"keys": [{"models": ["*"]}]}}},
        "$.providers.openai.keys[0].value",
        "Field required",
    ),
    ("key value not a string", with_key(value=12), "$.providers.openai.keys[0].value", "valid string"),
    ("negative weight", with_key(weight=-1), "$.providers.openai.keys[0].weight", "greater than or equal to 0"),
    ("infinite weight", with_key(weight=float("inf")), "$.providers.openai.keys[0].weight", "finite number"),
    ("key id with a slash", with_key(id="a/b"), "$.providers.openai.keys[0].id", "letters, digits"),
    ("key id too long", with_key(id="k" * 129), "$.providers.openai.keys[0].id", "1-128"),
    ("key name too long", with_key(name="n" * 256), "$.providers.openai.keys[0].name", "at most 255"),
    (
        "derived key id too long",
        with_key(name="n" * 200),
        "$.providers.openai.keys[0].name",
        "longer than 128",
    ),
    (
        "duplicate key ids in a provider",
        {"providers": {"openai": {"keys": [openai_key(id="k1"), openai_key(id="k1")]}}},
        "$.providers.openai.keys[1].id",
        "key id 'k1' is already used",
    ),
    (
        "duplicate key ids across providers",
        {"providers": {"openai": {"keys": [openai_key(id="k1")]}, "groq": {"keys": [openai_key(id="k1")]}}},
        "$.providers.groq.keys[0].id",
        "key id 'k1' is already used",
    ),
    (
        "explicit id equal to a derived id",
        {"providers": {"openai": {"keys": [openai_key(id="openai-1"), openai_key()]}}},
        "$.providers.openai.keys[1]",
        "key id 'openai-1' is already used",
    ),
    (
        "two keys with the same name",
        {"providers": {"openai": {"keys": [openai_key(name="main"), openai_key(name="main")]}}},
        "$.providers.openai.keys[1].name",
        "key id 'openai-main' is already used",
    ),
    (
        "duplicate virtual key names",
        {"governance": {"virtual_keys": [{"name": "team"}, {"name": "team"}]}},
        "$.governance.virtual_keys[1].name",
        "duplicate virtual key name 'team'",
    ),
    (
        "duplicate virtual key ids",
        {"governance": {"virtual_keys": [{"id": "vk-1", "name": "a"}, {"id": "vk-1", "name": "b"}]}},
        "$.governance.virtual_keys[1].id",
        "duplicate virtual key id 'vk-1'",
    ),
    (
        "virtual key without a name",
        {"governance": {"virtual_keys": [{"value": "sk-bf-x"}]}},
        "$.governance.virtual_keys[0].name",
        "Field required",
    ),
    (
        "virtual key name with a NUL",
        {"governance": {"virtual_keys": [{"name": "a\u0000b"}]}},
        "$.governance.virtual_keys[0].name",
        "NUL",
    ),
    (
        "two rules for one provider on a virtual key",
        {
            "governance": {
                "virtual_keys": [{"name": "a", "provider_configs": [{"provider": "openai"}, {"provider": "openai"}]}]
            }
        },
        "$.governance.virtual_keys[0].provider_configs[1].provider",
        "duplicate provider 'openai'",
    ),
    (
        "is_active not a boolean",
        {"governance": {"virtual_keys": [{"name": "a", "is_active": "sometimes"}]}},
        "$.governance.virtual_keys[0].is_active",
        "valid boolean",
    ),
    (
        "enforce_auth_on_inference not a boolean",
        {"client": {"enforce_auth_on_inference": "yes please"}},
        "$.client.enforce_auth_on_inference",
        "valid boolean",
    ),
    ("providers not an object", {"providers": ["openai"]}, "$.providers", "valid dictionary"),
    ("provider not an object", {"providers": {"openai": 5}}, "$.providers.openai", "valid dictionary"),
    ("keys not a list", {"providers": {"openai": {"keys": {"value": "x"}}}}, "$.providers.openai.keys", "valid list"),
    ("governance not an object", {"governance": 5}, "$.governance", "valid dictionary"),
    ("version not an integer", {"version": "one"}, "$.version", "valid integer"),
]


@pytest.mark.parametrize(("raw", "path", "fragment"), [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_reported_at_its_json_path(raw: Any, path: str, fragment: str) -> None:
    got_path, message = only_issue(raw)
    assert got_path == path
    assert fragment in message
    assert not message.startswith("Value error"), "pydantic's prefix is noise in a config error"


def test_every_error_is_reported_at_once() -> None:
    raw = {
        "providers": {
            "openai": {"keys": [openai_key(models=["*", "gpt-4o"]), {"models": []}]},
            "azure": {"keys": [openai_key()]},
            "acme": {},
        },
        "governance": {
            "virtual_keys": [{"name": "a", "provider_configs": [{"provider": "openai", "allowed_models": ["x", "x"]}]}]
        },
        "client": {"enforce_auth_on_inference": "maybe"},
    }
    paths = [issue.split(": ", 1)[0] for issue in issues_of(raw)]
    assert sorted(paths) == sorted(
        [
            "$.providers.openai.keys[0].models",
            "$.providers.openai.keys[1].value",
            "$.providers.azure.keys[0].azure_key_config",
            "$.providers.acme.custom_provider_config",
            "$.governance.virtual_keys[0].provider_configs[0].allowed_models",
            "$.client.enforce_auth_on_inference",
        ]
    )


def test_every_alias_problem_of_a_key_is_reported() -> None:
    raw = with_key(aliases={" a": "x", "B": "", "b": "y"})
    issues = issues_of(raw)
    assert len(issues) == 3, issues
    assert any(issue.startswith('$.providers.openai.keys[0].aliases[" a"]') for issue in issues)
    assert sum(issue.startswith("$.providers.openai.keys[0].aliases.B") for issue in issues) == 1
    assert sum(issue.startswith("$.providers.openai.keys[0].aliases.b:") for issue in issues) == 1


@pytest.mark.parametrize("top", [[], ["providers"], "config", 3, None, True])
def test_top_level_must_be_an_object(top: Any) -> None:
    assert issues_of(top) == ["$: the top level must be a JSON object"]


def test_config_error_names_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"providers": 1}, "/etc/heimdall/config.json")
    assert str(info.value) == "/etc/heimdall/config.json: 1 error(s)"


def test_aliases_may_map_to_any_provider_model_id() -> None:
    aliases = {
        "best-model": "gpt-4o-2024-11-20",
        "fast-model": "gpt-4o-mini",
        "claude": "arn:aws:bedrock:us-east-1:123:inference-profile/us.anthropic.claude",
        "Llama": "meta/llama-3-70b",
    }
    loaded = parse_config(with_key(aliases=aliases))
    assert loaded.config.providers["openai"].keys[0].aliases == aliases


# --- files ------------------------------------------------------------------------------------


def test_load_config_file_reads_json(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(with_key(aliases={"fast": "gpt-4o-mini"})))
    loaded = load_config_file(path)
    assert loaded.config.providers["openai"].keys[0].aliases == {"fast": "gpt-4o-mini"}


@pytest.mark.parametrize(
    "content",
    [b'{"providers": {', b'{"providers": {}} trailing', b"", b"{'single': 'quotes'}", b'{"a": 1,}', b"\xff\xfe{}"],
    ids=["truncated", "trailing", "empty", "single-quotes", "trailing-comma", "not-utf8"],
)
def test_invalid_json_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert info.value.source == str(path)
    [issue] = info.value.issues
    assert issue.path == "$"
    assert issue.message.startswith("invalid JSON: ")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_file(tmp_path / "nope.json")
    [issue] = info.value.issues
    assert issue.path == "$"
    assert "cannot read file" in issue.message


def test_json_top_level_array_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError) as info:
        load_config_file(path)
    assert [str(i) for i in info.value.issues] == ["$: the top level must be a JSON object"]


# --- legacy deployments -> aliases ------------------------------------------------------------


def test_azure_deployments_become_aliases_with_a_warning(tmp_path: Path) -> None:
    raw = {
        "providers": {
            "azure": {
                "keys": [
                    {
                        "value": "sk-azure-1234567890",
                        "models": ["gpt-4o", "gpt-4o-mini"],
                        "azure_key_config": {
                            "endpoint": "https://example.openai.azure.com",
                            "deployments": {"gpt-4o": "prod-gpt4o", "gpt-4o-mini": "prod-mini"},
                        },
                    }
                ]
            }
        }
    }
    path = tmp_path / "old-config.json"
    path.write_text(json.dumps(raw))
    loaded = load_config_file(path)
    key = loaded.config.providers["azure"].keys[0]
    assert key.aliases == {"gpt-4o": "prod-gpt4o", "gpt-4o-mini": "prod-mini"}
    assert key.azure_key_config is not None
    assert "deployments" not in (key.azure_key_config.model_extra or {})
    [warning] = loaded.warnings
    assert warning.startswith(f"{path}: ")
    assert "$.providers.azure.keys[0].azure_key_config.deployments" in warning
    assert "$.providers.azure.keys[0].aliases" in warning
    assert "deprecated" in warning


@pytest.mark.parametrize("config_name", ["bedrock_key_config", "vertex_key_config", "replicate_key_config"])
def test_other_providers_deployments_become_aliases(config_name: str) -> None:
    raw = with_key(**{config_name: {"deployments": {"claude": "arn:aws:bedrock:profile/claude"}}})
    loaded = parse_config(raw, "c.json")
    assert loaded.config.providers["openai"].keys[0].aliases == {"claude": "arn:aws:bedrock:profile/claude"}
    converted = [w for w in loaded.warnings if "deprecated" in w]
    assert len(converted) == 1
    assert f"$.providers.openai.keys[0].{config_name}.deployments" in converted[0]
    assert converted[0].startswith("c.json: ")


def test_explicit_alias_wins_over_a_legacy_deployment() -> None:
    raw = {
        "providers": {
            "azure": {
                "keys": [
                    openai_key(
                        aliases={"gpt-4o": "explicit"},
                        azure_key_config={
                            "endpoint": "https://e.example",
                            "deployments": {"gpt-4o": "legacy", "o1": "d-o1"},
                        },
                    )
                ]
            }
        }
    }
    key = parse_config(raw).config.providers["azure"].keys[0]
    assert key.aliases == {"gpt-4o": "explicit", "o1": "d-o1"}


def test_converted_deployments_are_validated_like_aliases() -> None:
    raw = {
        "providers": {
            "azure": {
                "keys": [
                    openai_key(azure_key_config={"endpoint": "https://e.example", "deployments": {"gpt-4o ": "d"}})
                ]
            }
        }
    }
    path, message = only_issue(raw)
    assert path == '$.providers.azure.keys[0].aliases["gpt-4o "]'
    assert "whitespace" in message


def test_malformed_deployments_are_not_silently_dropped() -> None:
    raw = {"providers": {"azure": {"keys": [openai_key(azure_key_config={"endpoint": "https://e", "deployments": 5})]}}}
    loaded = parse_config(raw)
    assert "$.providers.azure.keys[0].azure_key_config.deployments: unknown field, ignored" in loaded.warnings


def test_legacy_conversion_does_not_touch_keys_without_deployments() -> None:
    raw = with_key()
    loaded = parse_config(raw)
    assert loaded.warnings == []
    assert loaded.config.providers["openai"].keys[0].aliases == {}


# --- version 1 --------------------------------------------------------------------------------


def test_version_1_empty_allow_lists_mean_all() -> None:
    raw = {
        "version": 1,
        "providers": {"openai": {"keys": [{"value": "sk-a-1234567890"}, {"value": "sk-b-1234567890", "models": []}]}},
        "governance": {
            "virtual_keys": [
                {"name": "a", "provider_configs": [{"provider": "openai"}], "mcp_configs": [{"mcp_client_name": "n"}]}
            ]
        },
        "mcp": {
            "client_configs": [
                {"name": "n", "connection_type": "http", "connection_string": MCP_URL, "tools_to_execute": []}
            ],
            "mcp_clients": [
                {"name": "m", "connection_type": "http", "connection_string": MCP_URL, "tools_to_execute": []}
            ],
        },
    }
    loaded = parse_config(raw)
    config = loaded.config
    assert [key.models for key in config.providers["openai"].keys] == [["*"], ["*"]]
    rule = config.governance.virtual_keys[0].provider_configs[0]
    assert rule.allowed_models == ["*"]
    assert rule.key_ids == ["*"]
    assert config.governance.virtual_keys[0].mcp_configs[0].tools_to_execute == ["*"]
    assert config.mcp.client_configs[0].tools_to_execute == ["*"]
    assert config.mcp.mcp_clients[0].tools_to_execute == ["*"]
    assert not any("serves no model" in warning for warning in loaded.warnings)


def test_version_1_keeps_explicit_lists() -> None:
    raw = {"version": 1, "providers": {"openai": {"keys": [openai_key(models=["gpt-4o"])]}}}
    assert parse_config(raw).config.providers["openai"].keys[0].models == ["gpt-4o"]


def test_without_version_empty_allow_lists_mean_none() -> None:
    raw = {
        "providers": {"openai": {"keys": [{"value": "sk-a-1234567890"}]}},
        "governance": {"virtual_keys": [{"name": "a", "provider_configs": [{"provider": "openai"}]}]},
    }
    loaded = parse_config(raw)
    assert loaded.config.providers["openai"].keys[0].models == []
    assert loaded.config.governance.virtual_keys[0].provider_configs[0].allowed_models == []
    assert "$.providers.openai.keys[0].models is empty: this key serves no model" in loaded.warnings


@pytest.mark.parametrize(
    "raw",
    [
        {"version": 1, "providers": {"openai": 5}},
        {"version": 1, "providers": ["openai"]},
        {"version": 1, "providers": {"openai": {"keys": [5]}}},
        {"version": 1, "providers": {"openai": {"keys": {"value": "x"}}}},
        {"version": 1, "governance": 5},
        {"version": 1, "governance": {"virtual_keys": [5]}},
        {"version": 1, "governance": {"virtual_keys": [{"name": "a", "provider_configs": "x"}]}},
        {"version": 1, "mcp": {"client_configs": "x"}},
    ],
)
def test_version_1_with_malformed_sections_is_a_config_error(raw: Any) -> None:
    assert issues_of(raw)


# --- warnings ---------------------------------------------------------------------------------


def test_unknown_fields_are_warnings_with_their_paths() -> None:
    raw = {
        "telemetry": {"enabled": True},
        "providers": {
            "openai": {
                "keys": [openai_key(vault_ref="x")],
                "concurrency_and_buffer_size": {"concurrency": 10},
                "network_config": {"proxy": "http://p"},
            },
        },
        "governance": {"virtual_keys": [{"name": "a", "budget": {"max_limit": 5}}]},
        "client": {"drop_excess_requests": True},
    }
    warnings = parse_config(raw).warnings
    for path in (
        "$.telemetry",
        "$.providers.openai.keys[0].vault_ref",
        "$.providers.openai.concurrency_and_buffer_size",
        "$.providers.openai.network_config.proxy",
        "$.governance.virtual_keys[0].budget",
        "$.client.drop_excess_requests",
    ):
        assert f"{path}: unknown field, ignored" in warnings


# --- base_url -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://api.openai.com", "https://api.openai.com"),
        ("https://api.openai.com/", "https://api.openai.com"),
        ("https://api.openai.com/v1", "https://api.openai.com"),
        ("https://api.openai.com/v1/", "https://api.openai.com"),
        (" http://127.0.0.1:8000/v1 ", "http://127.0.0.1:8000"),
        ("https://api.groq.com/openai/v1", "https://api.groq.com/openai"),
        ("https://proxy.example/v1beta", "https://proxy.example/v1beta"),
    ],
)
def test_base_url_trailing_v1_is_tolerated(given: str, stored: str) -> None:
    raw = {"providers": {"openai": {"network_config": {"base_url": given}}}}
    assert parse_config(raw).config.providers["openai"].network_config.base_url == stored


def test_known_providers_have_default_base_urls() -> None:
    raw: dict[str, Any] = {"providers": {"openai": {}, "groq": {}, "anthropic": {}}}
    config = parse_config(raw).config
    urls = {
        name: provider_base_url(name, provider_kind(name, provider), provider.network_config)
        for name, provider in config.providers.items()
    }
    assert urls == {
        "openai": "https://api.openai.com",
        "groq": "https://api.groq.com/openai",
        "anthropic": "https://api.anthropic.com",
    }
    assert provider_kind("anthropic", config.providers["anthropic"]) == "anthropic"


def test_custom_provider_takes_its_kind_and_base_url() -> None:
    raw = {
        "providers": {
            "local_llm": {
                "custom_provider_config": {"base_provider_type": "openai"},
                "network_config": {"base_url": "http://127.0.0.1:9000/v1"},
                "keys": [openai_key()],
            }
        }
    }
    provider = parse_config(raw).config.providers["local_llm"]
    assert provider_kind("local_llm", provider) == "openai"
    assert provider_base_url("local_llm", "openai", provider.network_config) == "http://127.0.0.1:9000"


# --- json_path ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        ((), "$"),
        (("providers", "openai", "keys", 0, "value"), "$.providers.openai.keys[0].value"),
        (("providers", "my-provider"), '$.providers["my-provider"]'),
        (("aliases", ""), '$.aliases[""]'),
        (("aliases", 'quote"d'), '$.aliases["quote\\"d"]'),
        (("aliases", "gpt-4o"), '$.aliases["gpt-4o"]'),
    ],
)
def test_json_path(loc: tuple[int | str, ...], path: str) -> None:
    assert json_path(loc) == path
