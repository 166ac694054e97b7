"""Memory the ExperimentService uses to check a large data set in CreateExperiment.

CreateExperiment reads the whole data set and runs the data checks before it
stores anything. This benchmark generates a numeric CSV (`--rows` x
`--columns` plus a binary label), uploads it to an embedded S3 server and
calls CreateExperiment once. It reads the service's peak resident memory
(VmHWM in /proc, so Linux only) before and after the call and compares the
increase with the CSV's size and with the memory of the parsed table, which
the service cannot avoid holding. The result goes to the "## Data set check
memory" section of docs/benchmarks.md.

Usage: `python -m benchmarks.dataset_memory [--rows 600000] [--columns 40]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from automl.common.config import S3Settings
from automl.common.storage import ObjectStore
from automl.stack import Stack
from automl.v1 import experiment_pb2, pipeline_pb2
from benchmarks.markdown import replace_section
from tests.integration.helpers import ensure_target, experiment_stub

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Data set check memory"
MIB = 2 ** 20


def peak_resident_bytes(pid: int) -> int:
    """Return the peak resident memory (VmHWM) of process `pid` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM line in /proc/{pid}/status")


def write_csv(path: Path, rows: int, columns: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)).round(6), columns=[f"f{i}" for i in range(columns)])
    frame["label"] = rng.integers(0, 2, rows)
    frame.to_csv(path, index=False)


def run(rows: int, columns: int) -> str:
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="automl-memory-bench-") as workdir:
        workdir = Path(workdir)
        csv_path = workdir / "large.csv"
        write_csv(csv_path, rows, columns)
        file_bytes = csv_path.stat().st_size
        table_bytes = int(pd.read_csv(csv_path).memory_usage(deep=True).sum())

        s3 = Stack(workdir / "s3", free_ports=True, s3_endpoint="")
        s3.start(("s3",))
        os.environ["S3_ENDPOINT"] = s3.env["S3_ENDPOINT"]
        stack = Stack(workdir / "stack", free_ports=True, s3_endpoint=s3.env["S3_ENDPOINT"])
        try:
            stack.start(("compute", "experiment"))
            store = ObjectStore(S3Settings.from_env())
            store.ensure_bucket()
            uri = store.put_file("datasets/large.csv", str(csv_path), "text/csv")
            target = ensure_target(stack, "memory-bench")
            pid = stack.processes["experiment"].pid
            before = peak_resident_bytes(pid)

            started = time.monotonic()
            experiment = experiment_pb2.Experiment(
                dataset=pipeline_pb2.Dataset(uri=uri, label_column="label"), compute_target=target,
                task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="accuracy", iterations=1)
            stub = experiment_stub(stack)
            stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="memory-bench",
                                                                         experiment=experiment), timeout=600)
            seconds = time.monotonic() - started
            after = peak_resident_bytes(pid)
            stub.CancelExperiment(experiment_pb2.CancelExperimentRequest(name="experiments/memory-bench"))
        finally:
            stack.stop()
            s3.stop()

    increase = after - before
    return "\n".join([
        SECTION, "",
        f"Command: `python -m benchmarks.dataset_memory --rows {rows} --columns {columns}` (started "
        f"{started_at}). A numeric CSV of {rows:,} rows and {columns} "
        "feature columns plus a label; one CreateExperiment call, which reads the whole file and runs the data "
        "checks. Peak resident memory (VmHWM) of the ExperimentService process before and after the call.", "",
        "| measure | MiB | ratio to the parsed table |", "| --- | ---: | ---: |",
        f"| CSV file | {file_bytes / MIB:.0f} | {file_bytes / table_bytes:.2f} |",
        f"| parsed table (pandas, in this process) | {table_bytes / MIB:.0f} | 1.00 |",
        f"| service peak before the call | {before / MIB:.0f} | |",
        f"| service peak after the call | {after / MIB:.0f} | |",
        f"| increase of the peak | {increase / MIB:.0f} | {increase / table_bytes:.2f} |", "",
        f"CreateExperiment took {seconds:.1f} s.",
    ]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Peak memory of the ExperimentService while it checks a large CSV.")
    parser.add_argument("--rows", type=int, default=600_000, help="rows of the generated CSV (default 600000)")
    parser.add_argument("--columns", type=int, default=40, help="feature columns of the generated CSV (default 40)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="Markdown file whose section is written (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    for name in ("rows", "columns"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not Path("/proc/self/status").exists():
        parser.error("reads peak memory from /proc, so it runs on Linux only")
    text = run(args.rows, args.columns)
    print(text)
    replace_section(args.output, SECTION, text)


if __name__ == "__main__":
    main()
