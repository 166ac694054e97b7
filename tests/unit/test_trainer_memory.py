"""Resident memory of a process group, as the trainer's memory limit measures it."""

import os
import sys

import pytest

from services.trainer.procfs import group_rss_mib

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_own_group_has_resident_memory():
    used = group_rss_mib(os.getpgid(0))

    # A Python process with pytest loaded has tens of MiB resident.
    assert used is not None
    assert used > 10


def test_group_without_processes_is_none():
    # Group ids are process ids, and pid_max is at most 2**22 on Linux.
    assert group_rss_mib(2**22 + 1) is None
