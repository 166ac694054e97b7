"""Reading data sets from object storage into a feature table and labels.

Supported formats, chosen by the key's extension: CSV and Parquet with a label
column, and NPZ with arrays `X` and `y`. Downloads are cached on local disk by
ETag, so a node fetches each data set once however many iterations use it.
"""

from __future__ import annotations

import csv
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from automl.common.data_checks import check_column_names
from automl.common.errors import invalid_field
from automl.common.storage import ObjectStore, parse_uri

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}


@dataclass
class Table:
    """Features and labels of a data set."""

    features: pd.DataFrame
    labels: pd.Series
    label_column: str


def dataset_format(uri: str, field: str = "dataset.uri") -> str:
    """Return `csv`, `parquet` or `npz` from the URI's extension."""
    _, key = parse_uri(uri, field)
    suffix = Path(key).suffix.lower()
    if suffix not in FORMATS:
        raise invalid_field(field, f"'{uri}' has extension '{suffix}'; use a .csv, .parquet or .npz file")
    return FORMATS[suffix]


def read_csv_header(store: ObjectStore, uri: str, field: str = "dataset.uri") -> list[str]:
    """Return the column names of a CSV object, reading only its first bytes."""
    head = store.get_range(uri, 65536, field)
    if not head.strip():
        raise invalid_field(field, f"'{uri}' is empty; upload a CSV file with a header row")
    first_line = head.decode("utf-8", errors="replace").splitlines()[0]
    return next(csv.reader([first_line]))


def read_table(path: Path, fmt: str, label_column: str, uri: str = "") -> Table:
    """Read a local data set file into features and labels.

    Raises
    ------
    InvalidArgument
        On `dataset.uri` when the file is empty or unreadable, on
        `dataset.label_column` when the label column is missing.
    """
    name = uri or str(path)
    if path.stat().st_size == 0:
        raise invalid_field("dataset.uri", f"'{name}' is empty; upload a file with a header row and data")

    if fmt == "npz":
        return _read_npz(path, name)

    try:
        # Repeated names are checked before pandas reads the file, because it renames them in a CSV and fails on
        # them in Parquet.
        check_column_names(_raw_column_names(path, fmt), name)
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise invalid_field("dataset.uri", f"'{name}' could not be read as {fmt.upper()}: {str(error).strip()}; "
                                           f"upload a complete, valid {fmt.upper()} file") from error

    if not label_column:
        raise invalid_field("dataset.label_column", f"is required for {fmt.upper()} data sets; name the label column")
    if label_column not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise invalid_field("dataset.label_column",
                            f"column '{label_column}' is not in '{name}'; its columns are: {shown}")
    if len(frame) == 0:
        raise invalid_field("dataset.uri", f"'{name}' has a header but no rows")

    labels = frame.pop(label_column)
    return Table(features=frame, labels=labels, label_column=label_column)


def _raw_column_names(path: Path, fmt: str) -> list[str]:
    """Return the column names as the file stores them: the CSV header row or the Parquet schema."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        return next(csv.reader(handle), [])


def _read_npz(path: Path, name: str) -> Table:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays or "y" not in arrays:
                raise invalid_field("dataset.uri", f"'{name}' must contain arrays 'X' and 'y' but contains {list(arrays)}")
            features, labels = arrays["X"], arrays["y"]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise invalid_field("dataset.uri", f"'{name}' stores X or y as Python objects, which are not loaded "
                                               "because unpickling can run code; save numeric or string arrays, "
                                               "with every label of one type") from error
        raise invalid_field("dataset.uri", f"'{name}' could not be read as NPZ: {error}") from error
    except OSError as error:
        raise invalid_field("dataset.uri", f"'{name}' could not be read as NPZ: {error}") from error
    # A label column saved as an n x 1 table means the same as a vector.
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels):
        raise invalid_field("dataset.uri", f"'{name}' needs a 2-D X and a 1-D (or n x 1) y of the same length; "
                                           f"got X {features.shape} and y {labels.shape}")
    columns = [f"x{i}" for i in range(features.shape[1])]
    return Table(features=pd.DataFrame(features, columns=columns), labels=pd.Series(labels, name="y"),
                 label_column="y")


class DatasetCache:
    """Local copies of data set objects, keyed by ETag.

    Parameters
    ----------
    store : ObjectStore
        Where data sets are read from.
    directory : Path
        Cache folder; created when missing.
    """

    def __init__(self, store: ObjectStore, directory: Path):
        self.store = store
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.downloads = 0

    def local_path(self, uri: str) -> Path:
        """Return a local file with the object's current content, downloading it only when its ETag is new."""
        fmt = dataset_format(uri)
        info = self.store.stat(uri, "dataset.uri")
        path = self.directory / f"{info.etag}.{fmt}"
        with self._lock_for(info.etag):
            if not path.exists():
                partial = path.with_suffix(".partial")
                self.store.download(uri, str(partial), "dataset.uri")
                partial.rename(path)
                self.downloads += 1
        return path

    def load(self, uri: str, label_column: str) -> Table:
        """Download (or reuse) and read a data set."""
        return read_table(self.local_path(uri), dataset_format(uri), label_column, uri)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())


def download_table(store: ObjectStore, uri: str, label_column: str, field: str = "dataset.uri") -> Table:
    """Download a data set object to a temporary file and read it with `read_table`.

    The object goes straight to disk, so its bytes are never held in memory next to the parsed table.
    """
    fmt = dataset_format(uri)
    with tempfile.TemporaryDirectory(prefix="automl-dataset-") as folder:
        path = Path(folder) / f"dataset.{fmt}"
        store.download(uri, str(path), field)
        return read_table(path, fmt, label_column, uri)


__all__ = ["Table", "DatasetCache", "dataset_format", "read_csv_header", "read_table", "download_table"]
