"""CPU time from /proc, for the benches that put it next to their throughput."""

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def stat_cpu(fields: list[str]) -> float:
    """utime + stime, in seconds, of a /proc/<pid>/stat line's fields after the command name."""
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(pid: int) -> float:
    """CPU seconds of a live process and all its live descendants (a server's workers, a
    prefork pool)."""
    parents, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = stat_cpu(fields)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


def machine_cpu() -> float:
    """CPU seconds the machine spent busy (all but idle and iowait), from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK
