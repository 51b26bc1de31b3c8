"""CPU time and memory of a process tree, read from /proc (Linux only, no dependencies)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # the process exited between listing and reading
        return None


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the ``comm`` field (which may contain spaces)."""
    text = _read(_PROC / str(pid) / "stat")
    if text is None:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """user + system CPU time of ``pids`` (plus already-reaped children they waited for)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / _CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    text = _read(_PROC / str(pid) / "status")
    if text is None:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pids: list[int]) -> int:
    return sum(_status_kib(pid, "VmRSS") for pid in pids)


def hwm_kib(pids: list[int]) -> int:
    """Sum of each process's peak RSS (VmHWM); an upper bound of the tree's simultaneous peak."""
    return sum(_status_kib(pid, "VmHWM") for pid in pids)


@dataclass
class TreeUsage:
    cpu_seconds: float
    rss_kib: int
    hwm_kib: int
    processes: int


def snapshot(root: int) -> TreeUsage:
    pids = process_tree(root)
    return TreeUsage(cpu_seconds(pids), rss_kib(pids), hwm_kib(pids), len(pids))


class RssSampler:
    """Samples the tree's summed VmRSS in a background thread; ``peak_kib`` is the largest sample."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root = root
        self.interval = interval
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        pids = process_tree(self.root)
        rounds = 0
        while not self._stop.wait(self.interval):
            rounds += 1
            if rounds % 8 == 0:  # workers may be respawned; re-list the tree now and then
                pids = process_tree(self.root)
            self.peak_kib = max(self.peak_kib, rss_kib(pids))


def final_memory(pid: int, sampler: RssSampler) -> dict[str, int]:
    """The gateway's memory at the end of a run: process count, final and peak RSS, and VmHWM (KiB)."""
    final = snapshot(pid)
    return {
        "processes": final.processes,
        "final_rss_kib": final.rss_kib,
        "peak_sampled_rss_kib": max(sampler.peak_kib, final.rss_kib),
        "peak_hwm_kib": final.hwm_kib,
    }
