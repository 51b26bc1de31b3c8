"""Debian's chromium under Playwright (no browser download), and helpers for driving the web UI."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import Page, expect

CHROMIUM = os.environ.get("HEIMDALL_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--metrics-recording-only",
    "--password-store=basic",
]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot under test-artifacts/ui/ (kept by CI as an artifact, ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def sign_in(page: Page, base_url: str, admin_token: str, next_path: str = "/") -> None:
    page.goto(f"{base_url}/sign-in?next={next_path}")
    page.get_by_label("Admin token").fill(admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(base_url + next_path) + r"$"))
