"""RSS and CPU seconds of a process and its descendants, read from /proc."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def tree(pid: int) -> list[int]:
    """The process and all its live descendants."""
    seen = [pid]
    i = 0
    while i < len(seen):
        seen.extend(c for c in _children(seen[i]) if c not in seen)
        i += 1
    return seen


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_s(pid: int, tid: int | None = None) -> float:
    """CPU seconds of process `pid`, or of its thread `tid` alone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # fields[0] is state (field 3); utime, stime are fields 14, 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_rss_mb(pid: int) -> float:
    return sum(rss_kb(p) for p in tree(pid)) / 1024


def tree_pss_mb(pid: int) -> float:
    """The process tree's proportional set size: a page shared by k of its processes counts
    1/k in each (what forked workers share is counted once in all), unlike RSS."""
    total = 0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))
    return total / 1024


def tree_cpu_s(pid: int) -> float:
    return sum(cpu_s(p) for p in tree(pid))


@dataclass
class Usage:
    cpu_s: float
    rss_peak_mb: float
    rss_end_mb: float
    wall_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "cpu_s": round(self.cpu_s, 3),
            "cpu_util": round(self.cpu_s / self.wall_s, 3) if self.wall_s else 0.0,
            "rss_peak_mb": round(self.rss_peak_mb, 1),
            "rss_end_mb": round(self.rss_end_mb, 1),
        }


class Monitor:
    """Samples a process tree's RSS in the background; CPU is the delta over the window."""

    def __init__(self, pid: int | None, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu0 = 0.0
        self._t0 = 0.0
        self.result = Usage(0.0, 0.0, 0.0, 0.0)

    def _run(self) -> None:
        assert self.pid is not None
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, tree_rss_mb(self.pid))

    def __enter__(self) -> Monitor:
        self._t0 = time.monotonic()
        if self.pid is not None:
            self._cpu0 = tree_cpu_s(self.pid)
            self._peak = tree_rss_mb(self.pid)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t0
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.pid is None:
            self.result = Usage(0.0, 0.0, 0.0, wall)
            return
        end = tree_rss_mb(self.pid)
        cpu = tree_cpu_s(self.pid) - self._cpu0
        self.result = Usage(cpu, max(self._peak, end), end, wall)
