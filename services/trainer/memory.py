"""Resident memory of a worker's process group, read from /proc.

A worker calls `os.setpgid(0, 0)` first, so its process group is the worker
and every process it starts (for example joblib's). The group's resident
set size is what the node's memory limit applies to. Linux only: elsewhere
`group_rss_mib` returns None and no limit applies.
"""

from __future__ import annotations

import os

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# Positions in /proc/PID/stat after the command name: field 5 (pgrp) and field 24 (rss, in pages).
_PGRP, _RSS = 2, 21


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
            with open(f"/proc/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:  # The process ended between listdir and open.
            continue
        # The command name is in parentheses and may contain spaces, so the fields start after the last ")".
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > _RSS and int(fields[_PGRP]) == pgid:
            pages += int(fields[_RSS])
            found = True
    return pages * _PAGE_BYTES / 2**20 if found else None
