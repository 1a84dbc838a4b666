"""CPU seconds of the world's processes from /proc, to say what the load cost and where.

Only processes alive at both ends of a window are counted (a runtime or router killed
mid-scenario takes its CPU with it), so the figures are a floor.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == parent:
                found.append(int(entry))
    return found


def snapshot(groups: Mapping[str, Iterable[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds per pid, per named group of pids."""
    taken: dict[str, dict[int, float]] = {}
    for name, pids in groups.items():
        taken[name] = {}
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                taken[name][pid] = seconds
    return taken


def spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two snapshots (pids present in both)."""
    return {
        name: round(
            sum(
                after[name][pid] - start
                for pid, start in before[name].items()
                if pid in after.get(name, {})
            ),
            2,
        )
        for name in before
    }
