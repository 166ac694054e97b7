"""Client-side helpers for integration tests: stubs, data upload, waiting for states."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from automl.v1 import compute_pb2, compute_pb2_grpc, experiment_pb2, experiment_pb2_grpc, pipeline_pb2

TERMINAL = {
    experiment_pb2.EXPERIMENT_STATE_SUCCEEDED,
    experiment_pb2.EXPERIMENT_STATE_FAILED,
    experiment_pb2.EXPERIMENT_STATE_CANCELED,
}


def experiment_stub(stack) -> experiment_pb2_grpc.ExperimentServiceStub:
    return experiment_pb2_grpc.ExperimentServiceStub(grpc.insecure_channel(stack.address("experiment")))


def compute_stub(stack) -> compute_pb2_grpc.ComputeServiceStub:
    return compute_pb2_grpc.ComputeServiceStub(grpc.insecure_channel(stack.address("compute")))


def ensure_target(stack, target_id: str, max_nodes: int = 2) -> str:
    """Create a local compute target unless it exists; return its name."""
    stub = compute_stub(stack)
    try:
        stub.CreateComputeTarget(compute_pb2.CreateComputeTargetRequest(
            compute_target_id=target_id,
            compute_target=compute_pb2.ComputeTarget(vm_size="STANDARD_DS2_V2", max_nodes=max_nodes,
                                                     idle_seconds_before_scaledown=600)))
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    return f"computeTargets/{target_id}"


def upload_frame(store, key: str, frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return store.put_bytes(key, buffer.getvalue().encode(), "text/csv")


def iris_frame() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame = data.frame.rename(columns={"target": "species"})
    frame["species"] = np.array(data.target_names)[frame["species"]]
    return frame


def slow_frame(rows: int = 6000, features: int = 40) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    features_array, labels = make_classification(n_samples=rows, n_features=features, n_informative=20, random_state=0)
    frame = pd.DataFrame(features_array, columns=[f"f{i}" for i in range(features)])
    frame["label"] = labels
    return frame


def create_slow_experiment(stub, store, target: str, experiment_id: str, **fields) -> str:
    """Create an experiment of two GradientBoosting iterations, one at a time, slow enough to interrupt.

    `fields` override those of the Experiment message.
    """
    uri = upload_frame(store, f"datasets/{experiment_id}.csv", slow_frame())
    settings = dict(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="label"), compute_target=target,
        task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="AUC_weighted", seed=1, iterations=2,
        max_concurrent_iterations=1, validation=pipeline_pb2.Validation(n_cross_validations=3),
        allowed_models=["GradientBoosting"], enable_voting_ensemble=False, enable_stack_ensemble=False)
    settings.update(fields)
    experiment = experiment_pb2.Experiment(**settings)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id=experiment_id, experiment=experiment))
    return f"experiments/{experiment_id}"


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s")


def wait_terminal(stub, name: str, timeout: float = 300) -> experiment_pb2.Experiment:
    return wait_for(lambda: (e := stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name)))
                    .state in TERMINAL and e, timeout, 0.5, f"terminal state of {name}")


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """Return the BadRequest field violations of an error as field -> description."""
    status = rpc_status.from_call(error)
    found = {}
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


def worker_pids() -> set[int]:
    """Return the pids of running trainer workers on this machine (Linux).

    A worker is forked from its node's forkserver and makes itself a process
    group leader, while the forkserver stays in its node's group.
    """
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline_file:
                cmdline = cmdline_file.read()
            if b"multiprocessing.forkserver" in cmdline and os.getpgid(int(entry)) == int(entry):
                pids.add(int(entry))
        except (OSError, ProcessLookupError):  # The process ended while being read.
            continue
    return pids


def _trainer_processes():
    """Yield (pid, command-line arguments) of every trainer node process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # The process ended while being read.
            continue
        if b"services.trainer" in arguments and b"--node-name" in arguments:
            yield int(entry.name), arguments


def _argument(arguments: list[bytes], flag: bytes) -> str:
    return arguments[arguments.index(flag) + 1].decode()


def node_pids(prefix: str) -> dict[str, int]:
    """Return {node name: pid} of the trainer processes whose node name starts with `prefix`."""
    found = {}
    for pid, arguments in _trainer_processes():
        name = _argument(arguments, b"--node-name")
        if name.startswith(prefix):
            found[name] = pid
    return found


def alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def node_pids_under(root: Path) -> dict[str, int]:
    """Return {node name: pid} of the trainer processes whose `--cache-dir` is under `root`.

    Unlike `node_pids`, it cannot match nodes of another stack that happens
    to use the same target name.
    """
    found = {}
    prefix = str(Path(root).resolve()) + os.sep
    for pid, arguments in _trainer_processes():
        if b"--cache-dir" not in arguments:
            continue
        cache_dir = str(Path(_argument(arguments, b"--cache-dir")).resolve())
        if cache_dir.startswith(prefix) and alive(pid):
            found[_argument(arguments, b"--node-name")] = pid
    return found


def descendants(pid: int) -> set[int]:
    """Return the pids of every living process below `pid` in the process tree (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # The process ended while being read.
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found and alive(child):
                found.add(child)
                pending.append(child)
    return found


def resume_watch(stack, name: str, seen: list) -> tuple[list, experiment_pb2.Experiment, list]:
    """Watch experiment `name` again after the last of the `seen` events, to its end.

    Returns the new events, the ended experiment and its iterations.
    """
    stub = experiment_stub(stack)
    resumed = [response.event for response in stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(
        name=name, start_index=seen[-1].index + 1), timeout=240)]
    ended = stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name))
    iterations = list(stub.ListIterations(experiment_pb2.ListIterationsRequest(parent=name)).iterations)
    return resumed, ended, iterations
