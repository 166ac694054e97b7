"""gRPC surface of the ExperimentService: requests to `Orchestrator` calls and back."""

from __future__ import annotations

from google.protobuf import empty_pb2

from automl.common.errors import grpc_errors
from automl.common.names import parse_iteration_name, parse_name
from automl.v1 import experiment_pb2, experiment_pb2_grpc
from services.orchestrator.orchestrator import Orchestrator


def _experiment_id(name: str, field: str = "name") -> str:
    return parse_name(name, "experiments", field)


class ExperimentServicer(experiment_pb2_grpc.ExperimentServiceServicer):
    """Thin adapter from automl.v1.ExperimentService to `Orchestrator`."""

    def __init__(self, orchestrator: Orchestrator):
        self.orchestrator = orchestrator

    @grpc_errors
    def CreateExperiment(self, request, context):
        experiment = experiment_pb2.Experiment()
        experiment.CopyFrom(request.experiment)
        return self.orchestrator.create_experiment(request.experiment_id, experiment)

    @grpc_errors
    def GetExperiment(self, request, context):
        return self.orchestrator.get_experiment(_experiment_id(request.name))

    @grpc_errors
    def ListExperiments(self, request, context):
        experiments, token = self.orchestrator.list_experiments(request.page_size, request.page_token)
        return experiment_pb2.ListExperimentsResponse(experiments=experiments, next_page_token=token)

    @grpc_errors
    def DeleteExperiment(self, request, context):
        self.orchestrator.delete_experiment(_experiment_id(request.name))
        return empty_pb2.Empty()

    @grpc_errors
    def CancelExperiment(self, request, context):
        return self.orchestrator.cancel_experiment(_experiment_id(request.name))

    @grpc_errors
    def ContinueExperiment(self, request, context):
        return self.orchestrator.continue_experiment(_experiment_id(request.name), request.additional_iterations)

    @grpc_errors
    def WatchExperiment(self, request, context):
        for event in self.orchestrator.watch(_experiment_id(request.name), request.start_index, context.is_active):
            yield experiment_pb2.WatchExperimentResponse(event=event)

    @grpc_errors
    def GetIteration(self, request, context):
        return self.orchestrator.get_iteration(*parse_iteration_name(request.name))

    @grpc_errors
    def ListIterations(self, request, context):
        iterations, token = self.orchestrator.list_iterations(
            _experiment_id(request.parent, "parent"), request.page_size, request.page_token)
        return experiment_pb2.ListIterationsResponse(iterations=iterations, next_page_token=token)

    @grpc_errors
    def CancelIteration(self, request, context):
        return self.orchestrator.cancel_iteration(*parse_iteration_name(request.name))

    @grpc_errors
    def GetBestIteration(self, request, context):
        return self.orchestrator.best_iteration(_experiment_id(request.parent, "parent"), request.metric)

    @grpc_errors
    def GetExplanation(self, request, context):
        return self.orchestrator.get_explanation(_experiment_id(request.parent, "parent"))
