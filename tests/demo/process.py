"""``heimdall demo`` as a user starts it: the real CLI in a subprocess, its printed values read back."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HEIMDALL = str(Path(sys.executable).parent / "heimdall")
LAST_LINE = re.compile(r"^\s+-H 'Authorization: Bearer ")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def value(self, label: str) -> str:
        match = re.search(rf"^  {label}\s+(\S+)", self.output, re.M)
        assert match is not None, f"{label!r} not printed:\n{self.output}"
        return match.group(1)

    def command(self, starts_with: str) -> str:
        """A printed command, continuation lines included, as one would paste it into a shell."""
        lines = self.output.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(starts_with))
        end = start
        while lines[end].rstrip().endswith("\\"):
            end += 1
        return "\n".join(line.strip() for line in lines[start : end + 1])


def _read(demo: Demo) -> None:
    assert demo.process.stdout is not None
    for line in demo.process.stdout:
        demo.lines.append(line)


def run_demo() -> Iterator[Demo]:
    """Start the demo, wait for its walkthrough, kill it afterwards (use as a fixture body)."""
    process = subprocess.Popen(
        [HEIMDALL, "demo", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    running = Demo(process)
    threading.Thread(target=_read, args=(running,), daemon=True).start()
    deadline = time.monotonic() + 60
    while not any(LAST_LINE.match(line) for line in running.lines):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the demo did not print its walkthrough:\n{running.output}")
        time.sleep(0.05)
    yield running
    if process.poll() is None:
        process.kill()
        process.wait(10)


def run_printed(command: str) -> Any:
    """Run a printed command in a shell, as pasted; its JSON output."""
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
