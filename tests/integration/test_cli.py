"""The `automl` CLI as a subprocess against the whole stack, on the iris data set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from automl.cli.render import WATCH_HEADER
from automl.common.config import S3Settings
from automl.common.models import load_model_file
from automl.common.storage import ObjectStore

pytestmark = pytest.mark.integration

COMPUTE = "cli-cluster"
EXPERIMENT = "cli-iris"
# A key with a space and non-ASCII letters, as users name files.
DATA_KEY = "datasets/cli iris ü.csv"


def automl(stack, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "automl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "automl.cli.main"]
    return subprocess.run([*command, *args], env=stack.env, capture_output=True, text=True, timeout=timeout)


def iris_frame() -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    frame.columns = [column.replace(" (cm)", "").replace(" ", "_") for column in frame.columns]
    return frame.rename(columns={"target": "species"})


@pytest.fixture(scope="module")
def experiment(stack, tmp_path_factory):
    """Create a compute target, upload iris and run a 3-iteration experiment through the CLI."""
    path = tmp_path_factory.mktemp("cli") / "iris.csv"
    iris_frame().to_csv(path, index=False)

    created = automl(stack, "compute", "create", COMPUTE, "--vm-size", "STANDARD_DS2_V2", "--min-nodes", "0",
                     "--max-nodes", "2")
    assert created.returncode == 0, created.stderr

    uploaded = automl(stack, "data", "upload", str(path), "--key", DATA_KEY)
    assert uploaded.returncode == 0, uploaded.stderr

    submitted = automl(stack, "experiment", "submit", "--name", EXPERIMENT, "--data", uploaded.stdout.strip(),
                       "--label", "species", "--compute", COMPUTE, "--task", "classification",
                       "--metric", "AUC_weighted", "--iterations", "3", "--cv", "3", "--concurrency", "2")
    return {"uploaded": uploaded, "submitted": submitted}


def test_upload_prints_uri(experiment):
    assert experiment["uploaded"].stdout.strip() == f"s3://automl/{DATA_KEY}"


def test_submit_watches_to_success(experiment):
    submitted = experiment["submitted"]
    lines = submitted.stdout.splitlines()
    rows = [line for line in lines if line.strip() and line.split()[0].isdigit()]

    assert submitted.returncode == 0, submitted.stderr
    assert WATCH_HEADER in lines
    assert sorted(int(row.split()[0]) for row in rows) == [0, 1, 2]
    assert any(line.startswith(f"Experiment {EXPERIMENT} SUCCEEDED: best iteration") for line in lines)


def test_watch_best_column_is_running_maximum(experiment):
    rows = [line.split() for line in experiment["submitted"].stdout.splitlines()
            if line.strip() and line.split()[0].isdigit()]
    scores = [float(row[-2]) for row in rows]
    bests = [float(row[-1]) for row in rows]

    assert bests == [max(scores[:n + 1]) for n in range(len(scores))]


def test_iteration_list_shows_every_iteration(stack, experiment):
    listed = automl(stack, "iteration", "list", EXPERIMENT)
    header, *rows = listed.stdout.splitlines()

    assert listed.returncode == 0, listed.stderr
    assert header.split() == ["ITERATION", "STATE", "PIPELINE", "DURATION", "METRIC"]
    assert [row.split()[0] for row in rows] == ["0", "1", "2"]
    assert all(row.split()[1] == "SUCCEEDED" for row in rows)


def test_iteration_logs_print_stored_log(stack, experiment):
    shown = automl(stack, "iteration", "show", EXPERIMENT, "0")
    log_uri = next(line.split(None, 1)[1] for line in shown.stdout.splitlines() if line.startswith("Log:"))
    with mock.patch.dict(os.environ, {"S3_ENDPOINT": stack.env["S3_ENDPOINT"]}):
        stored = ObjectStore(S3Settings.from_env()).get_bytes(log_uri).decode()

    logs = automl(stack, "iteration", "logs", EXPERIMENT, "0")

    assert logs.returncode == 0, logs.stderr
    assert stored.strip()
    assert logs.stdout.strip() == stored.strip()


def test_model_download_predicts_raw_rows(stack, experiment, tmp_path):
    output = tmp_path / "model.skops"

    downloaded = automl(stack, "model", "download", EXPERIMENT, "--output", str(output))
    model = load_model_file(str(output))
    rows = iris_frame()
    predictions = model.pipeline.predict(rows.drop(columns="species"))

    assert downloaded.returncode == 0, downloaded.stderr
    assert "load_model_file" in downloaded.stdout
    assert len(predictions) == len(rows)
    assert (predictions == rows["species"]).mean() > 0.9


def test_bad_request_prints_field_violation(stack, experiment):
    rejected = automl(stack, "experiment", "submit", "--data", f"s3://automl/{DATA_KEY}", "--label", "species",
                      "--compute", COMPUTE, "--task", "classification", "--iterations", "0")

    assert rejected.returncode == 1
    assert rejected.stderr.startswith("error: INVALID_ARGUMENT")
    assert "\n  experiment.iterations: " in rejected.stderr
    assert "Traceback" not in rejected.stderr


def test_unknown_experiment_is_not_found(stack):
    shown = automl(stack, "experiment", "show", "no-such-experiment")

    assert shown.returncode == 1
    assert shown.stderr.startswith("error: NOT_FOUND")
    assert "Traceback" not in shown.stderr
