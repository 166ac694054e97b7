"""SQLite persistence of experiments, iterations, events and explanations.

Each record is stored as its serialized protobuf message next to the columns
that queries need, so a restart keeps every experiment and iteration and the
schema does not change when a message gains a field.
"""

from __future__ import annotations

import threading
from pathlib import Path

from automl.common import sqlite
from automl.v1 import experiment_pb2, explainer_pb2

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    create_time REAL NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS iterations (
    experiment_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (experiment_id, idx)
);
CREATE TABLE IF NOT EXISTS events (
    experiment_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (experiment_id, idx)
);
CREATE TABLE IF NOT EXISTS explanations (
    experiment_id TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
"""


class ExperimentStore:
    """Thread-safe SQLite store; one connection guarded by a lock.

    Parameters
    ----------
    path : str or Path
        Database file; `:memory:` for a throwaway store.
    """

    def __init__(self, path: str | Path):
        self._connection = sqlite.connect(path, SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def _execute(self, sql: str, parameters: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    # Experiments

    def put_experiment(self, experiment_id: str, experiment: experiment_pb2.Experiment) -> None:
        """Insert or replace an experiment."""
        self._execute(
            "INSERT INTO experiments (id, create_time, data) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET data = excluded.data",
            (experiment_id, experiment.create_time.ToNanoseconds() / 1e9, experiment.SerializeToString()),
        )

    def get_experiment(self, experiment_id: str) -> experiment_pb2.Experiment | None:
        rows = self._execute("SELECT data FROM experiments WHERE id = ?", (experiment_id,))
        return experiment_pb2.Experiment.FromString(rows[0][0]) if rows else None

    def list_experiments(self, offset: int, limit: int) -> list[experiment_pb2.Experiment]:
        """Return experiments newest first."""
        rows = self._execute("SELECT data FROM experiments ORDER BY create_time DESC, id LIMIT ? OFFSET ?",
                             (limit, offset))
        return [experiment_pb2.Experiment.FromString(row[0]) for row in rows]

    def delete_experiment(self, experiment_id: str) -> None:
        """Delete an experiment with its iterations, events and explanation, atomically."""
        with self._lock:
            self._connection.execute("BEGIN")
            for table, column in (("experiments", "id"), ("iterations", "experiment_id"),
                                  ("events", "experiment_id"), ("explanations", "experiment_id")):
                self._connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (experiment_id,))
            self._connection.execute("COMMIT")

    # Iterations

    def put_iteration(self, experiment_id: str, iteration: experiment_pb2.Iteration) -> None:
        self._execute(
            "INSERT INTO iterations (experiment_id, idx, data) VALUES (?, ?, ?) "
            "ON CONFLICT(experiment_id, idx) DO UPDATE SET data = excluded.data",
            (experiment_id, iteration.index, iteration.SerializeToString()),
        )

    def get_iteration(self, experiment_id: str, index: int) -> experiment_pb2.Iteration | None:
        rows = self._execute("SELECT data FROM iterations WHERE experiment_id = ? AND idx = ?",
                             (experiment_id, index))
        return experiment_pb2.Iteration.FromString(rows[0][0]) if rows else None

    def list_iterations(self, experiment_id: str, offset: int = 0, limit: int = -1) -> list[experiment_pb2.Iteration]:
        rows = self._execute("SELECT data FROM iterations WHERE experiment_id = ? ORDER BY idx LIMIT ? OFFSET ?",
                             (experiment_id, limit, offset))
        return [experiment_pb2.Iteration.FromString(row[0]) for row in rows]

    def count_iterations(self, experiment_id: str) -> int:
        return self._execute("SELECT COUNT(*) FROM iterations WHERE experiment_id = ?", (experiment_id,))[0][0]

    # Events

    def append_event(self, experiment_id: str, event: experiment_pb2.ExperimentEvent) -> experiment_pb2.ExperimentEvent:
        """Give the event the next index of its experiment and store it."""
        with self._lock:
            row = self._connection.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM events WHERE experiment_id = ?",
                                           (experiment_id,)).fetchone()
            event.index = row[0]
            self._connection.execute("INSERT INTO events (experiment_id, idx, data) VALUES (?, ?, ?)",
                                     (experiment_id, event.index, event.SerializeToString()))
        return event

    def list_events(self, experiment_id: str, start_index: int, limit: int = 500) -> list[experiment_pb2.ExperimentEvent]:
        rows = self._execute("SELECT data FROM events WHERE experiment_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
                             (experiment_id, start_index, limit))
        return [experiment_pb2.ExperimentEvent.FromString(row[0]) for row in rows]

    # Explanations

    def put_explanation(self, experiment_id: str, explanation: explainer_pb2.Explanation) -> None:
        self._execute("INSERT OR REPLACE INTO explanations (experiment_id, data) VALUES (?, ?)",
                      (experiment_id, explanation.SerializeToString()))

    def get_explanation(self, experiment_id: str) -> explainer_pb2.Explanation | None:
        rows = self._execute("SELECT data FROM explanations WHERE experiment_id = ?", (experiment_id,))
        return explainer_pb2.Explanation.FromString(rows[0][0]) if rows else None
