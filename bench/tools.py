"""Find (or, as root, install) the external tools the bench needs: wrk and nginx."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
APT_PACKAGES = ("wrk", "nginx-light")


class ToolError(RuntimeError):
    """A required tool is missing and cannot be installed."""


@dataclass(frozen=True)
class Tools:
    wrk: str
    nginx: str


def _which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _apt_install(packages: list[str]) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"bench: installing {' '.join(packages)} with apt-get", flush=True)
    install = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, check=False)
    if subprocess.run(install, env=env, check=False).returncode != 0:
        raise ToolError(f"apt-get install {' '.join(packages)} failed")


def ensure_tools() -> Tools:
    """Return paths to wrk and nginx, installing the Debian packages when running as root."""
    missing = [pkg for pkg, binary in zip(APT_PACKAGES, ("wrk", "nginx"), strict=True) if _which(binary) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise ToolError(
                f"missing {', '.join(missing)}: install with `sudo apt-get install -y {' '.join(missing)}` "
                "(Debian/Ubuntu; any nginx build works) and re-run"
            )
        _apt_install(missing)
    wrk, nginx = _which("wrk"), _which("nginx")
    if wrk is None or nginx is None:
        raise ToolError("wrk and nginx are still not on PATH after installation")
    return Tools(wrk=wrk, nginx=nginx)
