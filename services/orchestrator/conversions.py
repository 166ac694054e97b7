"""Conversions between experiment messages and the search's types."""

from __future__ import annotations

from google.protobuf import json_format

from automl.v1 import experiment_pb2, pipeline_pb2
from services.orchestrator.records import ENDED_ITERATION_STATES
from services.orchestrator.search import Proposal, Trial


def pipeline_of(proposal: Proposal) -> pipeline_pb2.Pipeline:
    """Return the Pipeline message of a proposal."""
    pipeline = pipeline_pb2.Pipeline(scaler=proposal.scaler, estimator=proposal.estimator,
                                     description=proposal.description)
    pipeline.hyperparameters.update(proposal.hyperparameters)
    return pipeline


def trial_of(iteration: experiment_pb2.Iteration) -> Trial:
    """Return an iteration as a search trial; only a succeeded iteration has a score."""
    pipeline = iteration.pipeline
    proposal = Proposal(pipeline.scaler, pipeline.estimator, json_format.MessageToDict(pipeline.hyperparameters),
                        iteration.subsample or 1.0)
    succeeded = iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED
    return Trial(proposal, iteration.score if succeeded else None, iteration.duration.ToNanoseconds() / 1e9,
                 iteration.state in ENDED_ITERATION_STATES)


def copy_data_report(experiment: experiment_pb2.Experiment, response) -> None:
    """Copy the guardrails and featurization summary of a RunIteration response onto the experiment, once."""
    # Every iteration of an experiment reads the same data, so the first report is kept.
    if experiment.guardrails:
        return
    experiment.guardrails.extend(response.guardrails)
    if response.HasField("featurization"):
        experiment.featurization.CopyFrom(response.featurization)
