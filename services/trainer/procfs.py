"""Process facts read from /proc: a process group's resident memory and whether a process runs.

A worker calls `os.setpgid(0, 0)` first, so its process group is the worker
and every process it starts (for example joblib's). The group's resident
set size is what the node's memory limit applies to. Linux only: elsewhere
`group_rss_mib` returns None and no limit applies.
"""

from __future__ import annotations

import os

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Positions in /proc/PID/stat after the command name: field 3 (state), 5 (pgrp) and 24 (rss, in pages).
_STATE, _PGRP, _RSS = 0, 2, 21


def _stat_fields(pid: str | int) -> list[bytes]:
    """Return the fields of /proc/PID/stat after the command name; raise OSError when it cannot be read."""
    with open(f"/proc/{pid}/stat", "rb") as stat_file:
        stat = stat_file.read()
    # The command name is in parentheses and may contain spaces, so the fields start after the last ")".
    return stat[stat.rfind(b")") + 2:].split()


def is_running(pid: int) -> bool:
    """Return whether `pid` runs; a zombie, whose parent has not reaped it yet, counts as gone."""
    try:
        return _stat_fields(pid)[_STATE] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        # Without /proc, a signal check is the fallback, and it reports zombies as running.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def group_rss_mib(pgid: int) -> float | None:
    """Return the summed resident memory of process group `pgid` in MiB, or None when it cannot be read.

    Parameters
    ----------
    pgid : int
        Process group id; a worker's group id is its own pid.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    pages, found = 0, False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:  # The process ended between listdir and open.
            continue
        if len(fields) > _RSS and int(fields[_PGRP]) == pgid:
            pages += int(fields[_RSS])
            found = True
    return pages * _PAGE_BYTES / 2**20 if found else None
