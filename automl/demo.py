"""End-to-end demo: `python -m automl.demo` (what `make demo` runs).

Starts the local stack under `.demo/`, then drives it with the `automl`
command-line client in this process. It creates the compute target
`automl-cluster` (unless an earlier run left it in the workdir) and uploads
scikit-learn's digits data set from row 10 on, so that the downloaded model
can predict rows 0 to 9 unseen. It runs a
20-iteration classification experiment with 5-fold cross-validation ranked
by AUC_weighted, and prints the live table, the best run and its SHAP
explanation. The stack stops at the end, also on errors and Ctrl-C. The exit
status is 0 only when the experiment succeeded.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

import grpc
import pandas as pd
from sklearn.datasets import load_digits

from automl.cli.client import Context
from automl.cli.errors import ServiceCallError, describe_exception
from automl.cli.main import main as automl
from automl.common import config
from automl.common.models import load_model_file
from automl.stack import Stack
from automl.v1 import compute_pb2, experiment_pb2

COMPUTE_TARGET = "automl-cluster"
LABEL_COLUMN = "digit"
HELD_OUT_ROWS = 10
MAX_NODES = 2
EXPLANATION_WAIT_SECONDS = 300
SUMMARY_METRICS = ("AUC_weighted", "accuracy", "balanced_accuracy", "f1_score_weighted", "log_loss")


class DemoFailed(Exception):
    """A demo step failed; the CLI already printed why."""


def write_digits(path: Path) -> pd.DataFrame:
    """Write the digits data set from row `HELD_OUT_ROWS` on as CSV; return the held-out rows."""
    digits = load_digits()
    frame = pd.DataFrame(digits.data, columns=[f"pixel_{i}" for i in range(digits.data.shape[1])])
    frame[LABEL_COLUMN] = digits.target
    frame.iloc[HELD_OUT_ROWS:].to_csv(path, index=False)
    return frame.iloc[:HELD_OUT_ROWS]


def busy_ports(stack: Stack) -> list[tuple[str, int]]:
    """Return the parts of the stack, with their ports, whose port is taken on 127.0.0.1."""
    parts = [part for part in ("s3", "compute", "explainer", "experiment") if part != "s3" or not stack.external_s3]
    wanted = [(part, stack.ports[part]) for part in parts]
    # Trainer nodes take ports from the base upwards, one per node.
    wanted += [(f"trainer node {n}", stack.ports["trainer"] + n) for n in range(MAX_NODES)]
    busy = []
    for part, port in wanted:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                busy.append((part, port))
    return busy


def run_cli(*argv: str, check: bool = True) -> int:
    """Echo and run one `automl` command in this process and return its exit status.

    Raises
    ------
    DemoFailed
        When `check` is set and the command fails.
    KeyboardInterrupt
        When the command was interrupted, so the demo stops too.
    """
    print(f"\n$ automl {shlex.join(argv)}", flush=True)
    status = automl(list(argv))
    if status == 130:
        raise KeyboardInterrupt
    if check and status != 0:
        raise DemoFailed(f"`automl {shlex.join(argv)}` exited with status {status}")
    return status


def wait_for_explanation(ctx: Context, name: str) -> experiment_pb2.Experiment:
    """Poll the experiment until its explanation has succeeded or failed, or the wait runs out."""
    deadline = time.monotonic() + EXPLANATION_WAIT_SECONDS
    pending = (experiment_pb2.EXPLANATION_STATE_PENDING, experiment_pb2.EXPLANATION_STATE_RUNNING)
    while True:
        experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
        if experiment.explanation_state not in pending or time.monotonic() > deadline:
            return experiment
        time.sleep(1.0)


def print_best(ctx: Context, name: str) -> None:
    """Print the best iteration in a few lines: index, pipeline and the headline metrics."""
    best = ctx.experiments.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=name))
    print(f"\nBest run: iteration {best.index}, {best.pipeline.description}")
    for metric in SUMMARY_METRICS:
        if metric in best.metrics:
            print(f"  {metric:<20} {best.metrics[metric]:.4f}")
    print(f"  (all metrics: automl experiment best {name.removeprefix('experiments/')})")


def predict_held_out(model_path: Path, held_out: pd.DataFrame) -> None:
    """Load the downloaded model and predict the rows left out of training."""
    model = load_model_file(str(model_path))
    predictions = model.pipeline.predict(held_out[model.feature_names])
    correct = sum(int(p) == int(t) for p, t in zip(predictions, held_out[LABEL_COLUMN]))
    print(f"\nPredictions of the downloaded model on the {len(held_out)} held-out rows:")
    print(f"  predicted: {' '.join(str(p) for p in predictions)}")
    print(f"  actual:    {' '.join(str(t) for t in held_out[LABEL_COLUMN])}")
    print(f"  {correct} of {len(held_out)} correct")


def target_exists(target_id: str) -> bool:
    """Return whether the compute service has the target `target_id`."""
    ctx = Context(config.address("experiment"), config.address("compute"))
    try:
        ctx.compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=f"computeTargets/{target_id}"))
        return True
    except ServiceCallError as error:
        if error.error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    finally:
        ctx.close()


def run_demo(workdir: Path, iterations: int, concurrency: int) -> int:
    """Run the demo steps against a started stack; return 0 when the experiment succeeded."""
    experiment_id = time.strftime("digits-%Y%m%d-%H%M%S")
    name = f"experiments/{experiment_id}"
    data_path = workdir / "digits.csv"
    held_out = write_digits(data_path)
    bucket = config.S3Settings.from_env().bucket

    # The compute service keeps its targets in the workdir, so a second demo run finds the first one's target.
    if target_exists(COMPUTE_TARGET):
        print(f"\nCompute target {COMPUTE_TARGET} remains from an earlier demo run in {workdir}; the demo uses it.")
    else:
        run_cli("compute", "create", COMPUTE_TARGET, "--vm-size", "STANDARD_DS2_V2", "--min-nodes", "0",
                "--max-nodes", str(MAX_NODES))
    run_cli("data", "upload", str(data_path), "--key", "datasets/digits.csv")

    # A failed experiment exits 1; the state check below reports it.
    run_cli("experiment", "submit", "--name", experiment_id, "--data", f"s3://{bucket}/datasets/digits.csv",
            "--label", LABEL_COLUMN, "--compute", COMPUTE_TARGET, "--task", "classification",
            "--metric", "AUC_weighted", "--iterations", str(iterations), "--cv", "5",
            "--concurrency", str(concurrency), "--explain", check=False)

    ctx = Context(config.address("experiment"), config.address("compute"))
    try:
        experiment = ctx.experiments.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
        if experiment.state != experiment_pb2.EXPERIMENT_STATE_SUCCEEDED:
            # The stack stops after the demo, so show the details now.
            run_cli("experiment", "show", experiment_id, check=False)
            run_cli("iteration", "list", experiment_id, check=False)
            print(f"\nThe experiment did not succeed; service logs are in {workdir / 'logs'}.", file=sys.stderr)
            return 1

        print_best(ctx, name)
        experiment = wait_for_explanation(ctx, name)
        if experiment.explanation_state == experiment_pb2.EXPLANATION_STATE_SUCCEEDED:
            run_cli("explanation", "show", experiment_id, "--top", "10")
        else:
            print(f"\nNo explanation: {experiment.explanation_error or 'it did not finish in time'}",
                  file=sys.stderr)

        model_path = workdir / "model.skops"
        run_cli("model", "download", experiment_id, "--output", str(model_path))
        predict_held_out(model_path, held_out)
    finally:
        ctx.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Start the stack, run the demo and stop the stack; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m automl.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(".demo"), help="logs, data and state (default .demo)")
    parser.add_argument("--iterations", type=int, default=20, help="iterations to run (default 20)")
    parser.add_argument("--concurrency", type=int, default=10, help="iterations at once (default 10)")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    stack = Stack(args.workdir)
    busy = busy_ports(stack)
    if busy:
        taken = ", ".join(f"{port} ({part})" for part, port in busy)
        verb = "is" if len(busy) == 1 else "are"
        print(f"Port{'s' if len(busy) > 1 else ''} {taken} {verb} in use on 127.0.0.1, "
              "so the demo runs the stack on free ports instead.")
        stack = Stack(args.workdir, free_ports=True)

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        print(f"Starting the stack (logs in {args.workdir / 'logs'}) ...", flush=True)
        try:
            stack.start()
        except RuntimeError as error:
            print(f"Could not start the stack: {error}", file=sys.stderr)
            return 1
        for part in ("s3", "compute", "explainer", "experiment"):
            print(f"  {part:<11} {stack.env['S3_ENDPOINT'] if part == 's3' else stack.address(part)}")
        os.environ.update({variable: stack.env[variable] for variable in config.ADDRESS_VARIABLES.values()})
        os.environ["S3_ENDPOINT"] = stack.env["S3_ENDPOINT"]
        return run_demo(args.workdir, args.iterations, args.concurrency)
    except DemoFailed as error:
        print(f"\nDemo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130
    except Exception as error:
        # Calls the demo makes outside the CLI fail with the CLI's messages.
        message = describe_exception(error, os.environ.get("S3_ENDPOINT", ""))
        if message is None:
            raise
        print(f"\nDemo failed: {message}", file=sys.stderr)
        return 1
    finally:
        print("\nStopping the stack ...", flush=True)
        stack.stop()


def _interrupt(signum, frame):
    # SIGTERM unwinds like Ctrl-C, so the `finally` above still stops the stack.
    raise KeyboardInterrupt

if __name__ == "__main__":
    sys.exit(main())
