"""Scheduling of the VotingEnsemble and StackEnsemble iterations.

As in Azure AutoML, the ensembles are the last iterations of the budget: with
both enabled, an experiment of 20 iterations runs 18 searched pipelines and
then the two ensembles. Each combines the best succeeded iterations that
stored out-of-fold predictions. An ensemble slot waits until every searched
iteration has ended, so its members are chosen from all of them. With fewer
than two usable members the slot runs a searched pipeline instead.
"""

from __future__ import annotations

import math

from automl.common import catalog
from automl.v1 import experiment_pb2, pipeline_pb2

VOTING = "VotingEnsemble"
STACK = "StackEnsemble"
# Members of an ensemble: the best iterations by primary metric.
MAX_MEMBERS = 10
MIN_MEMBERS = 2

# Returned by `next_ensemble` while searched iterations are still running.
WAIT = object()

_ACTIVE = (experiment_pb2.ITERATION_STATE_QUEUED, experiment_pb2.ITERATION_STATE_RUNNING)


def enabled_ensembles(experiment: experiment_pb2.Experiment) -> list[str]:
    """Return the ensembles the experiment builds, in the order they run; unset flags mean enabled."""
    names = []
    if not experiment.HasField("enable_voting_ensemble") or experiment.enable_voting_ensemble:
        names.append(VOTING)
    if not experiment.HasField("enable_stack_ensemble") or experiment.enable_stack_ensemble:
        names.append(STACK)
    return names


def is_ensemble(iteration: experiment_pb2.Iteration) -> bool:
    """Return whether the iteration is an ensemble of earlier iterations."""
    return iteration.pipeline.estimator in catalog.ENSEMBLES


def ensemble_members(experiment: experiment_pb2.Experiment,
                     iterations: list[experiment_pb2.Iteration]) -> list[experiment_pb2.Iteration]:
    """Return up to MAX_MEMBERS succeeded full-fidelity searched iterations, best primary metric first."""
    usable = [
        iteration for iteration in iterations
        if iteration.state == experiment_pb2.ITERATION_STATE_SUCCEEDED and not is_ensemble(iteration)
        and iteration.oof_predictions_uri and iteration.model_uri and math.isfinite(iteration.score)
        # Low-fidelity iterations fitted their models on a fraction of the rows; members must be full-data fits.
        and iteration.subsample in (0.0, 1.0)
    ]
    sign = -1.0 if catalog.higher_is_better(experiment.primary_metric) else 1.0
    usable.sort(key=lambda iteration: (sign * iteration.score, iteration.index))
    return usable[:MAX_MEMBERS]


def ensemble_pipeline(experiment: experiment_pb2.Experiment, name: str,
                      members: list[experiment_pb2.Iteration]) -> pipeline_pb2.Pipeline:
    """Return the pipeline of ensemble `name` over `members`."""
    pipeline = pipeline_pb2.Pipeline(scaler="None", estimator=name, description=name)
    pipeline.hyperparameters.update({"metric": experiment.primary_metric})
    for member in members:
        pipeline.ensemble_members.add(iteration=member.index, model_uri=member.model_uri,
                                      oof_predictions_uri=member.oof_predictions_uri)
    return pipeline


def next_ensemble(experiment: experiment_pb2.Experiment, index: int,
                  iterations: list[experiment_pb2.Iteration]):
    """Return the pipeline of iteration `index` when it is an ensemble slot.

    Returns
    -------
    pipeline_pb2.Pipeline, WAIT or None
        The ensemble's pipeline; WAIT while searched iterations still run;
        None when `index` is not an ensemble slot, the ensemble already ran,
        or fewer than two iterations can be members.
    """
    enabled = enabled_ensembles(experiment)
    first_slot = experiment.iterations - len(enabled)
    if index < first_slot:
        return None
    done = {iteration.pipeline.estimator for iteration in iterations
            if iteration.index >= first_slot and is_ensemble(iteration)}
    pending = [name for name in enabled if name not in done]
    if not pending:
        return None
    if any(iteration.state in _ACTIVE and not is_ensemble(iteration) and iteration.index != index
           for iteration in iterations):
        return WAIT
    members = ensemble_members(experiment, iterations)
    if len(members) < MIN_MEMBERS:
        return None
    return ensemble_pipeline(experiment, pending[0], members)


def runs_after_stop(stop_reason: str) -> bool:
    """Return whether skipped ensembles still run after the search stopped for `stop_reason`.

    A time budget or early stopping ends the search before the ensemble
    slots; the ensembles then run right after it, as extra iterations. A
    cancel or a reached exit score ends the experiment at once.
    """
    return stop_reason == "experiment timeout reached" or stop_reason.startswith("early stopping")


def skipped_ensemble(experiment: experiment_pb2.Experiment,
                     iterations: list[experiment_pb2.Iteration]) -> pipeline_pb2.Pipeline | None:
    """Return the next enabled ensemble that has not run since the last searched iteration, if any."""
    last_searched = max((iteration.index for iteration in iterations if not is_ensemble(iteration)), default=-1)
    done = {iteration.pipeline.estimator for iteration in iterations
            if iteration.index > last_searched and is_ensemble(iteration)}
    pending = [name for name in enabled_ensembles(experiment) if name not in done]
    members = ensemble_members(experiment, iterations)
    if not pending or len(members) < MIN_MEMBERS:
        return None
    return ensemble_pipeline(experiment, pending[0], members)
