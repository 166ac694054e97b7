"""The `automl` CLI: argument parsing, table rendering, error messages and the watch loop.

Calls go over real gRPC to an in-process server whose servicer raises the
project's domain errors through `grpc_errors` (which builds the status with
`automl.common.errors.to_status`), so the CLI decodes the same
`google.rpc.Status` details the services send. The servicer scripts its
responses because a broken event stream cannot be produced on demand with the
real orchestrator; tests/integration/test_cli.py runs the CLI against it.
"""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import pytest
from google.protobuf import duration_pb2

from automl.cli import render
from automl.cli.errors import describe_rpc_error
from automl.cli.experiments import build_experiment
from automl.cli.explanations import explanation_text
from automl.cli.main import build_parser, main
from automl.common.errors import FieldViolation, InvalidArgument, NotFound, Unavailable, grpc_errors
from automl.v1 import experiment_pb2, experiment_pb2_grpc, explainer_pb2, pipeline_pb2

SUBMIT = ["experiment", "submit", "--data", "s3://automl/datasets/iris.csv", "--label", "species",
          "--compute", "automl-cluster", "--task", "classification", "--iterations", "3"]


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def iteration(index: int, score: float, state=experiment_pb2.ITERATION_STATE_SUCCEEDED, seconds: int = 1,
              description: str = "StandardScaler SVM") -> experiment_pb2.Iteration:
    return experiment_pb2.Iteration(
        name=f"experiments/demo/iterations/{index}", index=index, state=state, score=score,
        metrics={"AUC_weighted": score} if state == experiment_pb2.ITERATION_STATE_SUCCEEDED else {},
        pipeline=pipeline_pb2.Pipeline(scaler="StandardScaler", estimator="SVM", description=description),
        duration=duration_pb2.Duration(seconds=seconds),
    )


# Parsing


def test_submit_leaves_unset_options_unset():
    experiment = build_experiment(parse(*SUBMIT), "s3://automl/datasets/iris.csv")

    assert experiment.iterations == 3
    assert experiment.compute_target == "computeTargets/automl-cluster"
    assert experiment.task == pipeline_pb2.TASK_CLASSIFICATION
    assert experiment.dataset.label_column == "species"
    assert not experiment.HasField("max_concurrent_iterations")
    assert not experiment.HasField("iteration_timeout_minutes")
    assert not experiment.HasField("experiment_timeout_minutes")
    assert not experiment.HasField("experiment_exit_score")
    assert not experiment.validation.HasField("n_cross_validations")
    assert not experiment.validation.HasField("validation_size")
    assert not experiment.HasField("enable_voting_ensemble")
    assert not experiment.HasField("enable_stack_ensemble")
    assert not experiment.enable_early_stopping


def test_submit_search_switches():
    args = parse(*SUBMIT, "--early-stopping", "--no-voting-ensemble", "--no-stack-ensemble")
    experiment = build_experiment(args, "s3://automl/datasets/iris.csv")

    assert experiment.enable_early_stopping
    assert experiment.HasField("enable_voting_ensemble")
    assert not experiment.enable_voting_ensemble
    assert experiment.HasField("enable_stack_ensemble")
    assert not experiment.enable_stack_ensemble


def test_submit_sets_every_given_option():
    args = parse(*SUBMIT, "--metric", "AUC_weighted", "--cv", "5", "--concurrency", "10",
                 "--iteration-timeout-minutes", "2.5", "--experiment-timeout-minutes", "60", "--exit-score", "0.99",
                 "--allowed-models", "SVM, RandomForest", "--blocked-models", "KNN", "--preprocess", "--explain",
                 "--seed", "7", "--name", "iris-1")
    experiment = build_experiment(args, "s3://automl/datasets/iris.csv")

    assert args.name == "iris-1"
    assert experiment.primary_metric == "AUC_weighted"
    assert experiment.validation.n_cross_validations == 5
    assert experiment.max_concurrent_iterations == 10
    assert experiment.iteration_timeout_minutes == 2.5
    assert experiment.experiment_timeout_minutes == 60
    assert experiment.experiment_exit_score == 0.99
    assert list(experiment.allowed_models) == ["SVM", "RandomForest"]
    assert list(experiment.blocked_models) == ["KNN"]
    assert experiment.preprocess
    assert experiment.model_explainability
    assert experiment.seed == 7


def test_submit_sends_zero_for_the_service_to_reject():
    experiment = build_experiment(parse(*SUBMIT[:-1], "0", "--concurrency", "0"), "s3://automl/d.csv")

    assert experiment.iterations == 0
    assert experiment.HasField("max_concurrent_iterations")


def test_cv_and_validation_size_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as raised:
        parse(*SUBMIT, "--cv", "3", "--validation-size", "0.2")

    assert raised.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_usage_error_exits_two():
    with pytest.raises(SystemExit) as raised:
        main(["compute", "create", "gpu"])
    assert raised.value.code == 2


def test_address_flag_after_subcommand_wins(monkeypatch):
    monkeypatch.setenv("AUTOML_EXPERIMENT_ADDRESS", "127.0.0.1:1111")

    assert parse("experiment", "list").experiment_address == "127.0.0.1:1111"
    assert parse("--experiment-address", "h:1", "experiment", "list").experiment_address == "h:1"
    assert parse("experiment", "list", "--experiment-address", "h:2").experiment_address == "h:2"


# Rendering


def test_watch_header_and_row_line_up():
    row = render.watch_row(iteration(0, 0.999), 0.999)

    assert render.WATCH_HEADER == " ITERATION   PIPELINE                              DURATION   METRIC   BEST"
    assert row == "         0   StandardScaler SVM                    0:00:01    0.9990   0.9990"
    for title in ("PIPELINE", "DURATION", "METRIC", "BEST"):
        column = render.WATCH_HEADER.index(title)
        assert row[column - 1] == " "
        assert row[column] != " "


def test_watch_row_shows_state_of_failed_iteration():
    row = render.watch_row(iteration(12, 0.0, experiment_pb2.ITERATION_STATE_FAILED, seconds=3725), 0.9812)

    assert row.split() == ["12", "StandardScaler", "SVM", "1:02:05", "FAILED", "0.9812"]


def test_watch_row_without_best_has_no_best_column():
    row = render.watch_row(iteration(0, 0.0, experiment_pb2.ITERATION_STATE_CANCELED), None)

    assert row.endswith("CANCELED")


def test_iteration_table_has_every_column():
    text = render.iteration_table([iteration(0, 0.95), iteration(1, 0.0, experiment_pb2.ITERATION_STATE_TIMED_OUT)])
    header, first, second = text.splitlines()

    assert header.split() == ["ITERATION", "STATE", "PIPELINE", "DURATION", "METRIC"]
    assert first.split() == ["0", "SUCCEEDED", "StandardScaler", "SVM", "0:00:01", "0.9500"]
    assert second.split() == ["1", "TIMED_OUT", "StandardScaler", "SVM", "0:00:01", "-"]


def test_format_table_aligns_right_columns():
    text = render.format_table(("NAME", "N"), [("a", 5), ("bbbb", 123)], right=(1,))

    assert text.splitlines() == ["NAME     N", "a        5", "bbbb   123"]


def test_format_duration_of_unset_is_dash():
    assert render.format_duration(duration_pb2.Duration()) == "-"
    assert render.format_duration(duration_pb2.Duration(seconds=59, nanos=600_000_000)) == "0:01:00"


def test_explanation_lists_top_features_and_classes():
    explanation = explainer_pb2.Explanation(
        explainer="tree", class_labels=["0", "1"], expected_values=[0.4, 0.6],
        feature_names=["a", "b", "c", "d"], row_count=50,
        overall_importance=[explainer_pb2.FeatureImportance(feature=f, importance=v)
                            for f, v in (("c", 0.5), ("a", 0.25), ("b", 0.125), ("d", 0.0625))],
        per_class_importance=[
            explainer_pb2.ClassImportance(class_label="0", features=[
                explainer_pb2.FeatureImportance(feature=f, importance=v)
                for f, v in (("c", 0.4), ("b", 0.3), ("a", 0.2), ("d", 0.1))]),
        ],
    )
    text = explanation_text(explanation, top=2)

    assert "Explainer:        tree" in text
    assert "0: 0.4000, 1: 0.6000" in text
    assert "Top 2 of 4 features" in text
    assert "c (0.4000), b (0.3000), a (0.2000)" in text
    assert "d (0.1000)" not in text
    assert "0.1250" not in text


# Errors over real gRPC


class ScriptedExperiments(experiment_pb2_grpc.ExperimentServiceServicer):
    """Raises a chosen domain error from GetExperiment and streams scripted events."""

    def __init__(self):
        self.error = None
        self.events: list[experiment_pb2.ExperimentEvent] = []
        self.break_after: int | None = None
        self.watch_starts: list[int] = []
        self.final_state = experiment_pb2.EXPERIMENT_STATE_SUCCEEDED

    @grpc_errors
    def GetExperiment(self, request, context):
        if self.error is not None:
            raise self.error
        return experiment_pb2.Experiment(name=request.name, state=self.final_state, primary_metric="AUC_weighted",
                                         task=pipeline_pb2.TASK_CLASSIFICATION, best_iteration=1, best_score=0.98,
                                         iteration_counts={"SUCCEEDED": 2, "FAILED": 1})

    @grpc_errors
    def WatchExperiment(self, request, context):
        self.watch_starts.append(request.start_index)
        sent = 0
        for event in self.events[request.start_index:]:
            if self.break_after is not None and sent == self.break_after:
                self.break_after = None
                raise Unavailable("the orchestrator is restarting", "RESTARTING")
            yield experiment_pb2.WatchExperimentResponse(event=event)
            sent += 1


@pytest.fixture(scope="module")
def scripted():
    servicer = ScriptedExperiments()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    experiment_pb2_grpc.add_ExperimentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def service(scripted):
    servicer, address = scripted
    servicer.__init__()
    return servicer, address


def test_field_violations_print_one_per_line(service, capsys):
    servicer, address = service
    servicer.error = InvalidArgument([
        FieldViolation("experiment.iterations", "0 is out of range; use 1 to 1000"),
        FieldViolation("experiment.primary_metric", "'r2_score' is a regression metric"),
    ])

    status = main(["experiment", "show", "demo", "--experiment-address", address])
    err = capsys.readouterr().err

    assert status == 1
    assert err.splitlines() == [
        "error: INVALID_ARGUMENT: 2 invalid fields",
        "  experiment.iterations: 0 is out of range; use 1 to 1000",
        "  experiment.primary_metric: 'r2_score' is a regression metric",
    ]
    assert "Traceback" not in err


def test_not_found_prints_code_and_message(service, capsys):
    servicer, address = service
    servicer.error = NotFound("experiment experiments/demo does not exist", "EXPERIMENT_NOT_FOUND")

    status = main(["experiment", "show", "demo", "--experiment-address", address])

    assert status == 1
    assert capsys.readouterr().err.strip() == "error: NOT_FOUND: experiment experiments/demo does not exist"


def test_rpc_error_keeps_message_beside_violations(service):
    servicer, address = service
    servicer.error = InvalidArgument([FieldViolation("name", "'x' is not a resource name")])
    servicer.error.message = "the request is invalid"
    stub = experiment_pb2_grpc.ExperimentServiceStub(grpc.insecure_channel(address))

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetExperiment(experiment_pb2.GetExperimentRequest(name="x"))

    assert describe_rpc_error(raised.value).splitlines() == [
        "error: INVALID_ARGUMENT: the request is invalid",
        "  name: 'x' is not a resource name",
    ]


def test_unreachable_service_names_address(capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens once the socket is closed.

    status = main(["experiment", "list", "--experiment-address", f"127.0.0.1:{port}"])

    assert status == 1
    assert capsys.readouterr().err.strip() == (
        f"error: cannot reach the ExperimentService at 127.0.0.1:{port}; is the stack running (make up)?")


def test_missing_upload_file_is_one_line(tmp_path, capsys):
    status = main(["data", "upload", str(tmp_path / "absent.csv")])

    assert status == 1
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'absent.csv'} is not a file; give the path of a CSV, Parquet or NPZ file")


# Watch


def finished(index: int, event_index: int, score: float, best: int, best_score: float,
             state=experiment_pb2.ITERATION_STATE_SUCCEEDED) -> experiment_pb2.ExperimentEvent:
    kind = (experiment_pb2.EVENT_TYPE_ITERATION_SUCCEEDED if state == experiment_pb2.ITERATION_STATE_SUCCEEDED
            else experiment_pb2.EVENT_TYPE_ITERATION_FAILED)
    return experiment_pb2.ExperimentEvent(index=event_index, type=kind, iteration=iteration(index, score, state),
                                          best_iteration=best, best_score=best_score)


def script_three_iterations(servicer) -> None:
    servicer.events = [
        experiment_pb2.ExperimentEvent(index=0, type=experiment_pb2.EVENT_TYPE_EXPERIMENT_STATE_CHANGED,
                                       state=experiment_pb2.EXPERIMENT_STATE_RUNNING, best_iteration=-1),
        finished(0, 1, 0.95, 0, 0.95),
        finished(1, 2, 0.98, 1, 0.98),
        finished(2, 3, 0.0, 1, 0.98, experiment_pb2.ITERATION_STATE_FAILED),
    ]


def test_watch_prints_a_row_per_finished_iteration(service, capsys):
    servicer, address = service
    script_three_iterations(servicer)

    status = main(["experiment", "watch", "demo", "--experiment-address", address])
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    assert lines[0] == render.WATCH_HEADER
    assert [line.split()[0] for line in lines[1:4]] == ["0", "1", "2"]
    assert [line.split()[-2:] for line in lines[1:4]] == [["0.9500", "0.9500"], ["0.9800", "0.9800"],
                                                          ["FAILED", "0.9800"]]
    assert "Experiment demo SUCCEEDED: best iteration 1 (StandardScaler SVM), AUC_weighted 0.9800" in lines


def test_watch_reconnects_after_last_event(service, capsys):
    servicer, address = service
    script_three_iterations(servicer)
    servicer.break_after = 2

    status = main(["experiment", "watch", "demo", "--experiment-address", address])
    captured = capsys.readouterr()
    rows = [line for line in captured.out.splitlines()[1:] if line.strip() and line.split()[0].isdigit()]

    assert status == 0
    assert servicer.watch_starts == [0, 2]
    assert [row.split()[0] for row in rows] == ["0", "1", "2"]
    assert "reconnecting from event 2" in captured.err


def test_watch_from_index_skips_earlier_events(service, capsys):
    servicer, address = service
    script_three_iterations(servicer)

    main(["experiment", "watch", "demo", "--from", "3", "--experiment-address", address])
    lines = capsys.readouterr().out.splitlines()

    assert servicer.watch_starts == [3]
    assert lines[1].split()[0] == "2"


def test_watch_of_failed_experiment_exits_one(service, capsys):
    servicer, address = service
    script_three_iterations(servicer)
    servicer.final_state = experiment_pb2.EXPERIMENT_STATE_FAILED

    assert main(["experiment", "watch", "demo", "--experiment-address", address]) == 1
    assert "Experiment demo FAILED" in capsys.readouterr().out
