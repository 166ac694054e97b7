"""Identify processes that are not children of this one, through /proc (Linux).

A process ID alone may be reused once its process has ended. The start time
of /proc/PID/stat (field 22, in clock ticks since boot) together with the
process ID identifies one process for as long as the machine runs.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
# Positions in /proc/PID/stat after the command name: field 3 (state) and field 22 (starttime).
_STATE, _START_TIME = 0, 19


def supported() -> bool:
    """Return whether /proc can be read on this machine."""
    return (PROC / "self" / "stat").exists()


def start_time(pid: int) -> int | None:
    """Return the start time of a running process, or None when it is gone, a zombie, or /proc is missing."""
    try:
        stat = (PROC / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces, so the fields start after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) <= _START_TIME or fields[_STATE] == b"Z":
        return None
    return int(fields[_START_TIME])


def is_same_process(pid: int, expected_start_time: int) -> bool:
    """Return whether `pid` still runs and is the process that started at `expected_start_time`."""
    return pid > 0 and start_time(pid) == expected_start_time
