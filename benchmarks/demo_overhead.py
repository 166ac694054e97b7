"""Service overhead: the demo's iterations through the services against a plain loop.

Runs, in one process and one sitting so that machine load affects both sides
alike:

1. the demo experiment (digits rows 10 onward, 20 iterations, 5-fold CV,
   AUC_weighted, max_concurrent_iterations 10, compute target with 2 nodes,
   explanation and ensembles off) through the real stack, timed from CreateExperiment to the
   last iteration's end;
2. the same 20 pipelines (read back from ListIterations) cross-validated and
   fitted on the same folds in this process, one after another;
3. the same, two pipelines at a time in two worker processes, which matches
   the two nodes' parallelism.

Prints a table and writes it to docs/benchmarks.md. Usage:
`python -m benchmarks.demo_overhead [--iterations 20]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from google.protobuf import json_format
from sklearn.model_selection import StratifiedKFold

from automl.common import catalog
from benchmarks.markdown import replace_section
from automl.common.config import S3Settings
from automl.common.storage import ObjectStore
from automl.stack import Stack
from automl.v1 import experiment_pb2, pipeline_pb2
from services.trainer.metrics import classification_metrics
from services.trainer.pipelines import build_pipeline, resolve_hyperparameters
from tests.integration.helpers import ensure_target, experiment_stub, upload_frame

# The trainers record warnings in iteration logs; here they would only bury the table.
warnings.filterwarnings("ignore", category=FutureWarning)

SECTION = "## Service overhead on the demo's experiment"
SEED = 0
FOLDS = 5
CORES_PER_NODE = 2  # STANDARD_DS2_V2


def digits_frame():
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True)
    frame = digits.frame.iloc[10:].rename(columns={"target": "digit"})
    frame.columns = [f"pixel_{i}" for i in range(64)] + ["digit"]
    return frame


def fit_like_a_trainer(spec: tuple[str, str, dict], features: np.ndarray, labels: np.ndarray) -> float:
    """Cross-validate, score every metric and fit the final model, as a trainer does; return AUC_weighted."""
    scaler, estimator, requested = spec
    # Struct numbers arrive as floats; convert them as a trainer does.
    params = resolve_hyperparameters(catalog.CLASSIFICATION, estimator, requested)
    classes = np.unique(labels)
    scores = []
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(features, labels):
        pipeline = build_pipeline(catalog.CLASSIFICATION, scaler, estimator, params, SEED, CORES_PER_NODE)
        pipeline.fit(features[train], labels[train])
        metrics = classification_metrics(labels[test], pipeline.predict(features[test]),
                                         pipeline.predict_proba(features[test]), classes)
        scores.append(metrics["AUC_weighted"])
    build_pipeline(catalog.CLASSIFICATION, scaler, estimator, params, SEED, CORES_PER_NODE).fit(features, labels)
    return float(np.mean(scores))


def run_services(iterations: int, workdir: Path) -> tuple[float, list, float]:
    stack = Stack(workdir, free_ports=True, s3_endpoint="")
    stack.start()
    try:
        os.environ["S3_ENDPOINT"] = stack.env["S3_ENDPOINT"]
        store = ObjectStore(S3Settings.from_env())
        store.ensure_bucket()
        uri = upload_frame(store, "datasets/digits.csv", digits_frame())
        target = ensure_target(stack, "bench-cluster", max_nodes=2)
        stub = experiment_stub(stack)
        experiment = experiment_pb2.Experiment(
            dataset=pipeline_pb2.Dataset(uri=uri, label_column="digit"), compute_target=target,
            task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="AUC_weighted", iterations=iterations,
            validation=pipeline_pb2.Validation(n_cross_validations=FOLDS), max_concurrent_iterations=10, seed=SEED,
            # The plain loop refits searched pipelines only, so both sides skip the ensembles.
            enable_voting_ensemble=False, enable_stack_ensemble=False)
        started = time.perf_counter()
        stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id="bench", experiment=experiment))
        for _ in stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name="experiments/bench")):
            pass
        wall = time.perf_counter() - started
        listed = stub.ListIterations(experiment_pb2.ListIterationsRequest(parent="experiments/bench")).iterations
        best = stub.GetExperiment(experiment_pb2.GetExperimentRequest(name="experiments/bench")).best_score
        specs = [(it.pipeline.scaler, it.pipeline.estimator, json_format.MessageToDict(it.pipeline.hyperparameters))
                 for it in listed if it.state == experiment_pb2.ITERATION_STATE_SUCCEEDED]
        return wall, specs, best
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compare the services' wall time with a plain loop.")
    parser.add_argument("--iterations", type=int, default=20, help="iterations of the experiment (default 20)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="Markdown file to write")
    args = parser.parse_args(argv)

    frame = digits_frame()
    features, labels = frame.drop(columns="digit").to_numpy(), frame["digit"].to_numpy()

    with tempfile.TemporaryDirectory() as workdir:
        service_wall, specs, best = run_services(args.iterations, Path(workdir))

    started = time.perf_counter()
    serial_scores = [fit_like_a_trainer(spec, features, labels) for spec in specs]
    serial_wall = time.perf_counter() - started

    started = time.perf_counter()
    # joblib's loky workers start fresh interpreters (this process has gRPC
    # threads, which fork does not copy safely) and run nested n_jobs serially.
    Parallel(n_jobs=2)(delayed(fit_like_a_trainer)(spec, features, labels) for spec in specs)
    parallel_wall = time.perf_counter() - started

    rows = [
        ("services: 2 trainer nodes, through gRPC and S3", service_wall),
        ("plain loop, one process", serial_wall),
        ("plain loop, 2 worker processes", parallel_wall),
    ]
    lines = [
        SECTION,
        "",
        f"Command: `python -m benchmarks.demo_overhead --iterations {args.iterations}` "
        f"({os.cpu_count()} cores, Python {platform.python_version()}). "
        f"{len(specs)} succeeded iterations, digits rows 10 onward, {FOLDS}-fold CV; "
        f"best AUC_weighted through the services {best:.4f}, in the plain loop {max(serial_scores):.4f}.",
        "",
        "| run | wall time (s) | ratio to services |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {seconds:.1f} | {seconds / service_wall:.2f} |" for name, seconds in rows]
    lines += ["", "The services' time includes starting the trainer nodes on demand, S3 transfers, "
                  "storing models, metrics and logs, and scheduling.", ""]
    text = "\n".join(lines)
    print(text)
    replace_section(Path(args.output), SECTION, text)


if __name__ == "__main__":
    main()
