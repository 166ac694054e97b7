"""SQLite connections for the services' state files."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str | Path, schema: str) -> sqlite3.Connection:
    """Open (or create) a SQLite database in autocommit mode and create its tables.

    Parameters
    ----------
    path : str or Path
        Database file; its folder is created when missing. `:memory:` gives a throwaway database.
    schema : str
        `CREATE TABLE IF NOT EXISTS` statements to run.

    The connection may be used from any thread, so callers guard it with a
    lock. WAL with `synchronous=NORMAL` keeps every committed transaction
    when the process is killed; only a crash of the operating system may lose
    the last ones.
    """
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(schema)
    return connection
