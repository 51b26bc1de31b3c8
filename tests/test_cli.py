"""The ``heimdall`` command run as a real subprocess: help, config check, config schema and serve.

Also checks that the committed docs/config.schema.json is the generated schema and that the spec's
example config.json validates against it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from heimdall.config.schema import config_json_schema
from heimdall.crypto import KEY_FILE_NAME, generate_key, parse_key
from heimdall.settings import Settings
from tests.support.examples import README_EXAMPLE
from tests.support.servers import free_port

HEIMDALL = Path(sys.executable).parent / "heimdall"
REPO = Path(__file__).resolve().parent.parent
SCHEMA_FILE = REPO / "docs" / "config.schema.json"
TOKEN_PATTERN = re.compile(r"hk-admin-[A-Za-z0-9_-]{20,}")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any HEIMDALL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEIMDALL_")}
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HEIMDALL), *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        timeout=timeout,
        check=False,
    )


# --- help -------------------------------------------------------------------------------------


def test_executable_is_installed() -> None:
    assert HEIMDALL.is_file(), f"{HEIMDALL} missing: pip install -e ."


def test_help() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: heimdall")
    for command in ("serve", "config"):
        assert command in result.stdout
    assert run("config", "--help").returncode == 0
    assert "check" in run("config", "--help").stdout


def test_version() -> None:
    from heimdall import __version__

    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"heimdall {__version__}"


def test_no_command_is_a_usage_error() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage: heimdall" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_help_lists_every_option_with_its_env_var() -> None:
    result = run("serve", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for option, env in (
        ("--config", "HEIMDALL_CONFIG"),
        ("--app-dir", "HEIMDALL_APP_DIR"),
        ("--host", "HEIMDALL_HOST"),
        ("--port", "HEIMDALL_PORT"),
        ("--db-url", "HEIMDALL_DB_URL"),
        ("--public-url", "HEIMDALL_PUBLIC_URL"),
        ("--workers", "HEIMDALL_WORKERS"),
        ("--log-level", "HEIMDALL_LOG_LEVEL"),
    ):
        assert option in text
        assert f"[{env}]" in text
    # Every setting the process reads is named, including those without an option.
    for name in Settings.model_fields:
        assert f"HEIMDALL_{name.upper()}" in text, name


# --- config check -----------------------------------------------------------------------------


def test_config_check_good_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(README_EXAMPLE))
    result = run("config", "check", str(path), env=clean_env(OPENAI_API_KEY="sk-x", AZURE_API_KEY="az-x"))
    assert result.returncode == 0, result.stderr
    assert f"{path}: OK (2 providers, 2 keys, 1 virtual keys, 1 warnings)" in result.stdout
    assert "warning: $.governance.virtual_keys[0].value: environment variable TEAM_A_VK is not set" in result.stdout
    assert "Traceback" not in result.stderr


def test_config_check_reports_legacy_conversion_and_unknown_fields(tmp_path: Path) -> None:
    raw = copy.deepcopy(README_EXAMPLE)
    raw["providers"]["azure"]["keys"][0]["azure_key_config"]["deployments"] = {"o1": "o1-deployment"}
    raw["plugins"] = []
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    result = run(
        "config", "check", str(path), env=clean_env(OPENAI_API_KEY="x", AZURE_API_KEY="x", TEAM_A_VK="sk-bf-x")
    )
    assert result.returncode == 0, result.stderr
    assert (
        f"warning: {path}: $.providers.azure.keys[0].azure_key_config.deployments is deprecated and was converted "
        "to $.providers.azure.keys[0].aliases"
    ) in result.stdout
    assert "warning: $.plugins: unknown field, ignored" in result.stdout
    assert "2 warnings" in result.stdout


def test_config_check_bad_file_prints_every_error(tmp_path: Path) -> None:
    raw = copy.deepcopy(README_EXAMPLE)
    raw["providers"]["openai"]["keys"][0]["aliases"] = {"my-custom-alias ": "gpt-4o-mini", "": "x"}
    raw["providers"]["openai"]["keys"][0]["models"] = ["*", "gpt-4o"]
    del raw["providers"]["azure"]["keys"][0]["azure_key_config"]
    raw["providers"]["acme"] = {"keys": []}
    raw["governance"]["virtual_keys"].append({"name": "team-a"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    result = run("config", "check", str(path))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"{path}: 6 error(s)" in output
    for fragment in (
        '$.providers.openai.keys[0].aliases["my-custom-alias "]: ',
        '$.providers.openai.keys[0].aliases[""]: alias names must not be empty',
        '$.providers.openai.keys[0].models: "*" cannot be combined with other values',
        "$.providers.azure.keys[0].azure_key_config: azure keys need azure_key_config.endpoint",
        "$.providers.acme.custom_provider_config: ",
        "$.governance.virtual_keys[1].name: duplicate virtual key name 'team-a'",
    ):
        assert fragment in output, fragment
    assert "Traceback" not in output
    assert "OK" not in result.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b'{"providers": ', "$: invalid JSON"),
        (b"[]", "$: the top level must be a JSON object"),
        (b'{"version": 1, "providers": {"openai": 5}}', "$.providers.openai: "),
    ],
)
def test_config_check_malformed_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    result = run("config", "check", str(path))
    assert result.returncode == 1
    assert fragment in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = run("config", "check", str(tmp_path / "nope.json"))
    assert result.returncode == 1
    assert "cannot read file" in result.stderr
    assert "Traceback" not in result.stderr


# --- config schema ----------------------------------------------------------------------------


def test_config_schema_command_prints_a_json_schema() -> None:
    result = run("config", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema == config_json_schema()
    assert {"providers", "governance", "mcp", "client", "version"} <= set(schema["properties"])


def test_committed_schema_is_the_generated_one() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == config_json_schema(), (
        "docs/config.schema.json is stale: run `.venv/bin/heimdall config schema > docs/config.schema.json`"
    )
    assert SCHEMA_FILE.read_text() == json.dumps(config_json_schema(), indent=2) + "\n"


def test_readme_example_validates_against_the_committed_schema() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    errors = list(validator.iter_errors(README_EXAMPLE))
    assert errors == [], [error.message for error in errors]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda raw: raw["providers"]["openai"]["keys"][0].update(weight=-1),
        lambda raw: raw["providers"]["openai"]["keys"][0].pop("value"),
        lambda raw: raw["providers"]["openai"]["keys"][0].update(aliases={"a": 5}),
        lambda raw: raw["governance"]["virtual_keys"][0].update(is_active="yes"),
        lambda raw: raw["client"].update(enforce_auth_on_inference="no"),
        lambda raw: raw.update(providers=[]),
    ],
)
def test_schema_rejects_wrong_shapes(mutate: Any) -> None:
    raw = copy.deepcopy(README_EXAMPLE)
    mutate(raw)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(raw))


# --- serve ------------------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def serve(args: list[str], env: dict[str, str], url: str, log: Path, timeout: float = 30) -> Iterator[Served]:
    """Start ``heimdall serve`` and wait until /health answers; always stop it again."""
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [str(HEIMDALL), "serve", *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        try:
            served = Served(process, url, log)
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise AssertionError(f"heimdall serve exited with {process.returncode}:\n{served.stderr()}")
                try:
                    if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"heimdall serve did not answer /health:\n{served.stderr()}")
                time.sleep(0.05)
            yield served
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)


def test_serve_generates_and_prints_an_admin_token_once(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--app-dir", str(app_dir), "--port", str(port), "--host", "127.0.0.1"]

    with serve(args, clean_env(), url, tmp_path / "first.log") as first:
        health = httpx.get(f"{url}/health", trust_env=False)
        assert health.json()["status"] == "ok"
        tokens = TOKEN_PATTERN.findall(first.stderr())
        assert len(tokens) == 1, first.stderr()
        token = tokens[0]
        assert "HEIMDALL_ADMIN_TOKEN" in first.stderr()
        listed = httpx.get(f"{url}/api/providers", headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        assert listed.status_code == 200
        assert httpx.get(f"{url}/api/providers", trust_env=False).status_code == 401

        key_file = app_dir / KEY_FILE_NAME
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = parse_key(key_file.read_text())
        assert (app_dir / "heimdall.db").is_file()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal as its exit status.
    assert first.process.returncode in (0, -signal.SIGTERM), first.stderr()
    assert "Application shutdown complete" in first.stderr()
    assert "Traceback" not in first.stderr()

    with serve(args, clean_env(), url, tmp_path / "second.log") as second:
        assert TOKEN_PATTERN.findall(second.stderr()) == [], "the token is shown on the first start only"
        listed = httpx.get(f"{url}/api/providers", headers={"Authorization": f"Bearer {token}"}, trust_env=False)
        assert listed.status_code == 200, "the generated token keeps working"
    assert parse_key((app_dir / KEY_FILE_NAME).read_text()) == key, "the key file is reused"


def test_serve_from_environment_only(tmp_path: Path) -> None:
    app_dir = tmp_path / "env-app"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"providers": {"openai": {"keys": [{"value": "sk-env-only-123456", "models": ["*"]}]}}})
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(
        HEIMDALL_PORT=str(port),
        HEIMDALL_APP_DIR=str(app_dir),
        HEIMDALL_CONFIG=str(config),
        HEIMDALL_ADMIN_TOKEN="hk-admin-from-environment",
    )
    with serve([], env, url, tmp_path / "env.log") as served:
        assert TOKEN_PATTERN.findall(served.stderr()) == [], "a configured token is never printed"
        response = httpx.get(
            f"{url}/api/providers", headers={"Authorization": "Bearer hk-admin-from-environment"}, trust_env=False
        )
        assert response.status_code == 200
        assert [p["name"] for p in response.json()["providers"]] == ["openai"]
        assert (app_dir / KEY_FILE_NAME).is_file()
        assert (app_dir / "heimdall.db").is_file()


def test_serve_with_db_url(tmp_path: Path, db_url: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(HEIMDALL_ADMIN_TOKEN="hk-admin-db-url-test", HEIMDALL_ENCRYPTION_KEY=generate_key())
    app_dir = tmp_path / "db-app"
    with serve(["--app-dir", str(app_dir), "--port", str(port), "--db-url", db_url], env, url, tmp_path / "db.log"):
        config = httpx.get(
            f"{url}/api/config", headers={"Authorization": "Bearer hk-admin-db-url-test"}, trust_env=False
        ).json()
        assert config["store"] == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
        assert not (app_dir / KEY_FILE_NAME).exists(), "a configured encryption key is not written to disk"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"HEIMDALL_PORT": "eighty"}, "invalid setting port"),
        ({"HEIMDALL_WORKERS": "0"}, "invalid setting workers"),
        ({"HEIMDALL_ENCRYPTION_KEY": "dG9vLXNob3J0"}, "encryption key"),
    ],
)
def test_serve_rejects_bad_settings_cleanly(tmp_path: Path, env: dict[str, str], fragment: str) -> None:
    # No --port: the option would win over HEIMDALL_PORT (and a mistake would then start a server, bounded by run()).
    result = run("serve", "--app-dir", str(tmp_path), env=clean_env(**{"HEIMDALL_PORT": str(free_port()), **env}))
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    for value in env.values():
        if len(value) > 6:
            assert value not in result.stderr, "settings values (possibly secrets) are not echoed"


def test_serve_refuses_a_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"providers": {"openai": {"keys": [{"value": "x", "aliases": {" a": "b"}}]}}}))
    result = run("serve", "--app-dir", str(tmp_path / "app"), "--config", str(config), "--port", str(free_port()))
    assert result.returncode == 2
    assert '$.providers.openai.keys[0].aliases[" a"]' in result.stderr
    assert "Traceback" not in result.stderr
