"""TrainerService over gRPC: requests in, IterationRunner calls, responses out."""

from __future__ import annotations

from google.protobuf import duration_pb2, empty_pb2

from automl.common.errors import grpc_errors, invalid_field
from automl.v1 import trainer_pb2, trainer_pb2_grpc
from services.trainer.guardrails import featurization_message, guardrail_messages
from services.trainer.runner import IterationRunner
from services.trainer.spec import spec_from_request


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Thin adapter from the TrainerService API to an IterationRunner."""

    def __init__(self, runner: IterationRunner):
        self.runner = runner

    @grpc_errors
    def RunIteration(self, request: trainer_pb2.RunIterationRequest, context) -> trainer_pb2.RunIterationResponse:
        spec = spec_from_request(request)
        result = self.runner.run(spec, caller_active=context.is_active)
        duration = duration_pb2.Duration()
        duration.FromNanoseconds(int(result.duration_seconds * 1e9))
        return trainer_pb2.RunIterationResponse(
            metrics=result.metrics,
            model_uri=result.model_uri,
            log_uri=result.log_uri,
            metrics_uri=result.metrics_uri,
            duration=duration,
            validation_strategy=result.validation_strategy,
            node=result.node,
            oof_predictions_uri=result.oof_predictions_uri,
            featurization=featurization_message(result.featurization) if result.featurization else None,
            guardrails=guardrail_messages(result.guardrails),
        )

    @grpc_errors
    def CancelRun(self, request: trainer_pb2.CancelRunRequest, context) -> empty_pb2.Empty:
        if not request.iteration:
            raise invalid_field("iteration", "is required; name the iteration to cancel, "
                                             "experiments/{id}/iterations/{index}")
        self.runner.cancel(request.iteration)
        return empty_pb2.Empty()
