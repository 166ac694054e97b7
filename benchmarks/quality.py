"""Search quality: our experiments against FLAML and a gradient-boosting floor on held-out rows.

For every data set of the shared manifest (`manifest.json` with fields name,
file, task and label_column) and scikit-learn's bundled iris, wine,
breast_cancer, digits and diabetes, one run does, side by side:

1. a fixed 75/25 split (stratified for classification, random_state 0);
2. ours: one experiment through the real stack on the training rows, uploaded
   as CSV. It has the wall-clock budget as experiment_timeout_minutes, 1000
   iterations, preprocess on, 2 concurrent iterations on a 2-node
   STANDARD_DS2_V2 target, AUC_weighted or r2_score and seed 0. The best
   iteration's model is downloaded and scored on the held-out rows;
3. FLAML's `AutoML.fit` in this process with the same time budget and seed;
4. a floor: scikit-learn's HistGradientBoosting with default settings, object
   columns ordinal-encoded.

Held-out metric: ROC AUC (binary), one-vs-rest AUC weighted by class frequency
(multiclass), r2 (regression). A failure of one side is recorded in the table
and the run goes on. Writes the "## Search quality against FLAML" section of
docs/benchmarks.md and keeps the other sections. Usage:
`python -m benchmarks.quality [--budget 60] [--datasets iris,phoneme] [--data-dir DIR] [--output FILE]`.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from sklearn import datasets as sklearn_datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OrdinalEncoder

from automl.common.config import S3Settings
from automl.common.models import loads_model
from automl.common.storage import ObjectStore
from automl.stack import Stack
from automl.v1 import experiment_pb2, pipeline_pb2
from benchmarks.quality_report import Dataset, Outcome, render, score_cell, seconds_cell, write_section
from tests.integration.helpers import ensure_target, experiment_stub, upload_frame

REPO = Path(__file__).resolve().parents[1]
SEED = 0
TEST_SIZE = 0.25
ITERATIONS = 1000
CONCURRENT_ITERATIONS = 2
# Nodes of 2 cores each, as in the demo benchmark. On a 2-core machine more nodes would only share the same cores.
NODES = 2

# scikit-learn's bundled data sets: loader and task. They ship with the package, so nothing is downloaded.
BUNDLED = {
    "iris": (sklearn_datasets.load_iris, "classification"),
    "wine": (sklearn_datasets.load_wine, "classification"),
    "breast_cancer": (sklearn_datasets.load_breast_cancer, "classification"),
    "digits": (sklearn_datasets.load_digits, "classification"),
    "diabetes": (sklearn_datasets.load_diabetes, "regression"),
}

# HistGradientBoosting rejects categorical features with more categories than its bins.
MAX_NATIVE_CATEGORIES = 255


def load_shared(directory: Path, wanted: set[str] | None) -> list[Dataset]:
    """Read the manifest's data sets from `directory`, only the `wanted` names when given."""
    entries = json.loads((directory / "manifest.json").read_text())
    found = []
    for entry in entries:
        if wanted is not None and entry["name"] not in wanted:
            continue
        frame = pd.read_csv(directory / entry["file"])
        found.append(Dataset(entry["name"], entry["task"], entry["label_column"], frame, shared=True))
    return found


def load_bundled(name: str) -> Dataset:
    """Load a scikit-learn data set and pass it through CSV, so every side reads what the services read."""
    loader, task = BUNDLED[name]
    frame = loader(as_frame=True).frame
    frame = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
    return Dataset(name, task, "target", frame, shared=False)


def split(dataset: Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split 75/25, stratified on the label for classification."""
    labels = dataset.frame[dataset.label_column]
    stratify = labels if dataset.task == "classification" else None
    return train_test_split(dataset.frame, test_size=TEST_SIZE, stratify=stratify, random_state=SEED)


def held_out_score(task: str, y_true: pd.Series, model, classes) -> float:
    """Score a fitted model: ROC AUC (binary), weighted one-vs-rest AUC (multiclass) or r2.

    `model` has `predict` (regression) or `predict_proba` with columns in the order of `classes`.
    """
    if task == "regression":
        return float(r2_score(y_true, model.predict()))
    probabilities = np.asarray(model.predict_proba())
    classes = list(classes)
    if len(classes) == 2:
        return float(roc_auc_score(y_true == classes[1], probabilities[:, 1]))
    return float(roc_auc_score(y_true, probabilities, multi_class="ovr", average="weighted", labels=classes))


class _Bound:
    """A model bound to its held-out features, so `held_out_score` serves every side."""

    def __init__(self, model, features: pd.DataFrame):
        self.model, self.features = model, features

    def predict(self):
        return self.model.predict(self.features)

    def predict_proba(self):
        return self.model.predict_proba(self.features)


# Ours: one experiment through the real services


class Services:
    """The stack, the object store and the compute target shared by every experiment of a run."""

    def __init__(self, workdir: Path):
        self.stack = Stack(workdir, free_ports=True, s3_endpoint="")
        self.stack.start()
        os.environ["S3_ENDPOINT"] = self.stack.env["S3_ENDPOINT"]
        self.store = ObjectStore(S3Settings.from_env())
        self.store.ensure_bucket()
        self.target = ensure_target(self.stack, "quality-cluster", max_nodes=NODES)
        self.stub = experiment_stub(self.stack)

    def stop(self) -> None:
        self.stack.stop()


def run_ours(services: Services, dataset: Dataset, train: pd.DataFrame, test: pd.DataFrame,
             budget: float) -> Outcome:
    """Run an experiment on the training rows and score its best model on the held-out rows."""
    classification = dataset.task == "classification"
    experiment_id = "quality-" + dataset.name.replace("_", "-")
    name = f"experiments/{experiment_id}"
    uri = upload_frame(services.store, f"quality/{dataset.name}/train.csv", train)
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column=dataset.label_column), compute_target=services.target,
        task=pipeline_pb2.TASK_CLASSIFICATION if classification else pipeline_pb2.TASK_REGRESSION,
        primary_metric="AUC_weighted" if classification else "r2_score", iterations=ITERATIONS,
        experiment_timeout_minutes=budget / 60, preprocess=True, max_concurrent_iterations=CONCURRENT_ITERATIONS,
        seed=SEED)

    started = time.perf_counter()
    try:
        services.stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(
            experiment_id=experiment_id, experiment=experiment))
    except grpc.RpcError as error:
        return Outcome(error=f"rejected: {error.code().name}", note=error.details())

    try:
        note = _watch(services, name, budget)
    except Exception:
        # An experiment left running would take the cores from FLAML and the floor.
        _cancel_quietly(services, name)
        raise
    seconds = time.perf_counter() - started
    ended = services.stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
    state = experiment_pb2.ExperimentState.Name(ended.state).removeprefix("EXPERIMENT_STATE_")
    if ended.best_iteration < 0:
        return Outcome(seconds=seconds, error=f"failed: {state}", note="; ".join(filter(None, [note, ended.error])))

    best = services.stub.GetBestIteration(experiment_pb2.GetBestIterationRequest(parent=name))
    model = loads_model(services.store.get_bytes(best.model_uri))
    classes = getattr(model.pipeline, "classes_", model.class_labels)
    score = held_out_score(dataset.task, test[dataset.label_column],
                           _Bound(model.pipeline, test[model.feature_names]), classes)
    counts = ", ".join(f"{count} {kind.lower()}" for kind, count in sorted(ended.iteration_counts.items()))
    summary = f"best iteration {best.index}: {best.pipeline.description} ({counts})"
    return Outcome(score=score, seconds=seconds, note="; ".join(filter(None, [summary, note])))


def _watch(services: Services, name: str, budget: float) -> str:
    """Wait for the experiment to end. Cancel it when it overruns its budget by far, and return a note about that."""
    # Generous, so that only a hang or a budget that is not enforced trips it.
    limit = 3 * budget + 120
    try:
        for _ in services.stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name=name), timeout=limit):
            pass
        return ""
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    services.stub.CancelExperiment(experiment_pb2.CancelExperimentRequest(name=name))
    for _ in services.stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name=name), timeout=120):
        pass
    return f"canceled by the benchmark: still running after {limit:.0f} s"


def _cancel_quietly(services: Services, name: str) -> None:
    try:
        services.stub.CancelExperiment(experiment_pb2.CancelExperimentRequest(name=name), timeout=30)
    except grpc.RpcError as error:
        logging.getLogger("benchmarks.quality").warning("could not cancel %s: %s", name, error.details())


# FLAML and the floor, in this process


def run_flaml(dataset: Dataset, train: pd.DataFrame, test: pd.DataFrame, budget: float) -> Outcome:
    """Fit FLAML's AutoML on the training rows with the same budget and seed, then score it on the held-out rows."""
    from flaml import AutoML

    label = dataset.label_column
    if dataset.task == "regression":
        metric = "r2"
    else:
        metric = "roc_auc" if train[label].nunique() == 2 else "roc_auc_ovr_weighted"
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(train.drop(columns=label), train[label], task=dataset.task, metric=metric, time_budget=budget,
               seed=SEED, verbose=0)
    seconds = time.perf_counter() - started
    classes = automl.classes_ if dataset.task == "classification" else None
    score = held_out_score(dataset.task, test[label], _Bound(automl, test.drop(columns=label)), classes)
    trials = len(automl.config_history)
    plural = "" if trials == 1 else "s"
    note = f"best estimator {automl.best_estimator} after {trials} trial{plural}"
    return Outcome(score=score, seconds=seconds, note=note)


def run_floor(dataset: Dataset, train: pd.DataFrame, test: pd.DataFrame) -> Outcome:
    """Fit default HistGradientBoosting with ordinal-encoded text columns, then score it on the held-out rows."""
    label = dataset.label_column
    features = train.drop(columns=label)
    text_columns = [column for column in features.columns if not pd.api.types.is_numeric_dtype(features[column])]
    # Native categorical splits need few categories, so columns with more stay ordinal codes treated as numbers.
    native = [features[column].nunique() <= MAX_NATIVE_CATEGORIES for column in text_columns]
    encoder = ColumnTransformer(
        [("text", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan), text_columns)],
        remainder="passthrough")
    # The encoder puts the encoded text columns first. Numeric columns keep their NaN for native handling.
    categorical = native + [False] * (features.shape[1] - len(text_columns))
    if dataset.task == "classification":
        estimator = HistGradientBoostingClassifier(categorical_features=categorical, random_state=SEED)
    else:
        estimator = HistGradientBoostingRegressor(categorical_features=categorical, random_state=SEED)
    started = time.perf_counter()
    pipeline = make_pipeline(encoder, estimator).fit(features, train[label])
    seconds = time.perf_counter() - started
    classes = pipeline.classes_ if dataset.task == "classification" else None
    score = held_out_score(dataset.task, test[label], _Bound(pipeline, test.drop(columns=label)), classes)
    return Outcome(score=score, seconds=seconds)


def guarded(side: str, dataset: Dataset, work) -> Outcome:
    """Run one side on one data set, turning an exception into a recorded failure so the run goes on."""
    try:
        return work()
    except Exception as error:  # Any failure of one side is a result to report, not a reason to stop.
        logging.getLogger("benchmarks.quality").warning("%s failed on %s: %r", side, dataset.name, error)
        return Outcome(error=f"failed: {type(error).__name__}", note=str(error)[:300])


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(description="Compare our experiments' held-out scores with FLAML's "
                                                 "and with a HistGradientBoosting floor.")
    parser.add_argument("--budget", type=float, default=60,
                        help="wall-clock budget of each experiment and each FLAML fit, in seconds (default 60)")
    parser.add_argument("--datasets", default="",
                        help="comma-separated data set names to run (default: all shared and bundled ones)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets",
                        help="folder with manifest.json and the shared CSV files (default ../shared/datasets "
                             "next to the repository)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="Markdown file whose quality section is written (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget {args.budget:g} is not above 0; give seconds, for example 60")
    return args, parser


def select_datasets(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Dataset]:
    """Load the requested data sets: the manifest's first, then the bundled ones."""
    wanted = {name.strip() for name in args.datasets.split(",") if name.strip()} or None
    manifest = args.data_dir / "manifest.json"
    shared_names = [entry["name"] for entry in json.loads(manifest.read_text())] if manifest.exists() else []
    if wanted is not None:
        unknown = sorted(wanted - set(shared_names) - set(BUNDLED))
        if unknown:
            parser.error(f"--datasets: unknown {', '.join(unknown)}; choose from "
                         f"{', '.join(shared_names + list(BUNDLED))}")
    elif not manifest.exists():
        parser.error(f"{manifest} not found; pass --data-dir with the folder of manifest.json, or pick bundled "
                     f"data sets with --datasets {','.join(BUNDLED)}")
    shared = load_shared(args.data_dir, wanted) if shared_names else []
    bundled = [load_bundled(name) for name in BUNDLED if wanted is None or name in wanted]
    return shared + bundled


def main(argv: list[str] | None = None) -> None:
    args, parser = parse_arguments(argv)
    chosen = select_datasets(args, parser)
    # FLAML and scikit-learn warn on every fit about things that do not change the scores, which would bury the table.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("flaml").setLevel(logging.ERROR)

    command = "python -m benchmarks.quality --budget {:g}".format(args.budget)
    if args.datasets:
        command += f" --datasets {args.datasets}"
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="quality-") as workdir:
        try:
            services = Services(Path(workdir))
        except Exception as error:  # Without the stack, FLAML and the floor still run and ours is marked failed.
            logging.getLogger("benchmarks.quality").warning("the stack did not start: %r", error)
            services, stack_error = None, f"the stack did not start: {error}"
        try:
            for dataset in chosen:
                train, test = split(dataset)
                print(f"{dataset.name}: {len(train)} training rows, {len(test)} held-out rows", flush=True)
                dataset_started = time.perf_counter()
                if services is None:
                    ours = Outcome(error="failed: no stack", note=stack_error)
                else:
                    ours = guarded("ours", dataset, lambda: run_ours(services, dataset, train, test, args.budget))
                flaml = guarded("FLAML", dataset, lambda: run_flaml(dataset, train, test, args.budget))
                floor = guarded("floor", dataset, lambda: run_floor(dataset, train, test))
                print(f"  ours {score_cell(ours)} ({seconds_cell(ours)} s), "
                      f"FLAML {score_cell(flaml)} ({seconds_cell(flaml)} s), "
                      f"floor {score_cell(floor)} ({seconds_cell(floor)} s); "
                      f"{time.perf_counter() - dataset_started:.0f} s for the data set", flush=True)
                results.append((dataset, ours, flaml, floor))
        finally:
            if services is not None:
                services.stop()

    minutes = (time.perf_counter() - started) / 60
    run = (f"started {started_at}, took {minutes:.0f} min, 1-minute load average {load_before:.1f} before "
           f"and {os.getloadavg()[0]:.1f} after")
    text = render(results, args.budget, command, run)
    print(text)
    write_section(args.output, text)


if __name__ == "__main__":
    main()
