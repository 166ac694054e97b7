"""Pipeline proposers: which scaler, estimator and hyperparameters to try next.

`Proposer` is the interface the scheduler uses. `TPEProposer` first tries the
portfolio of `search_space.PORTFOLIOS`, then samples the conditional space
(estimator, then its scaler and hyperparameters) with Optuna's TPE sampler,
fitted to every finished iteration. The study is rebuilt from the history on
every call, so a proposal depends only on the seed, the iteration index and
the history. A run with an iteration budget is therefore reproducible, and a
restarted orchestrator continues where the previous one stopped.

Four refinements on top of TPE:

- Focus: a short budget allows few model-based draws, too few for TPE to
  learn which of a dozen families are worth it, so most draws come from the
  `FOCUS_FAMILIES` families with the best scores so far, and
  `EXPLORATION_SHARE` of them from every family. Boosted trees usually lead
  on tabular data, but a data set where a linear model leads keeps it.
  TPE itself samples every family: a draw outside the focus is rejected
  and drawn again, and after `REDRAWS` rejections a random configuration of
  a focused family is taken. TPE ignores rejected draws, so with few
  results it often keeps drawing the same out-of-focus families, and many
  focused proposals are these random configurations. Letting TPE choose
  only among the focused families, tried together with a per-configuration
  time estimate, scored lower on the quality benchmark (diamonds and
  hotel_rates), so it is not done.
- Local refinement: a short budget also leaves TPE too few results to
  model a space of ten hyperparameters, and its draws spread over all of
  it. So `LOCAL_SHARE` of the proposals after the portfolio perturb one of
  the `LOCAL_PARENTS` best configurations instead (see
  `search_space.perturb`).
- Cost: with a time budget, an estimator family whose mean iteration time
  exceeds `COST_SHARE` of the remaining time is not proposed again.
- Fidelity: on data sets of more than `LARGE_DATA_ROWS` rows, new
  configurations run on `LOW_FIDELITY` of the training rows first, and only
  the promising ones run again on every row (only those can become best),
  when that run is expected to end within the time left.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from typing import Protocol

import optuna
from optuna.trial import TrialState, create_trial

from automl.common import catalog
from services.orchestrator.search_space import (PORTFOLIOS, SCALE_FREE, SCALER_CHOICES, SEARCH_SPACES, perturb,
                                                sample_random, to_distribution)

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Data sets with more rows than this get low-fidelity trials first.
LARGE_DATA_ROWS = 20_000
# Share of the training rows a low-fidelity trial uses.
LOW_FIDELITY = 0.25
# A low-fidelity configuration runs again on every row when its score is within this top share.
PROMOTION_SHARE = 0.25
# An estimator family is skipped once its mean iteration time exceeds this share of the remaining time.
COST_SHARE = 0.5
# Random configurations TPE draws before modeling; the portfolio results count towards them.
STARTUP_TRIALS = 5
# Fresh draws tried when a draw repeats a configuration or picks a family that is too slow or out of focus.
REDRAWS = 10
# After the portfolio, this share of the proposals perturbs one of the LOCAL_PARENTS best configurations.
LOCAL_SHARE = 0.5
LOCAL_PARENTS = 3
# The other proposals are TPE draws from the families with the best scores so far...
FOCUS_FAMILIES = 3
# ...except on this share of the draws, which may pick any family.
EXPLORATION_SHARE = 0.2


@dataclass(frozen=True)
class Proposal:
    """A pipeline to try, on a share of the training rows (`subsample`, 1.0 for all)."""

    scaler: str
    estimator: str
    hyperparameters: dict = field(default_factory=dict)
    subsample: float = 1.0

    @property
    def description(self) -> str:
        return self.estimator if self.scaler == "None" else f"{self.scaler} {self.estimator}"

    def key(self) -> tuple:
        """Identity of the configuration, whatever its fidelity."""
        return self.scaler, self.estimator, tuple(sorted(self.hyperparameters.items(), key=lambda item: item[0]))

    def at_fidelity(self, subsample: float) -> Proposal:
        return Proposal(self.scaler, self.estimator, dict(self.hyperparameters), subsample)


@dataclass(frozen=True)
class Trial:
    """An iteration as input to the proposer.

    `score` is None when the iteration failed or has not ended; `finished`
    distinguishes the two. `duration` is in seconds, 0 when unknown.
    """

    proposal: Proposal
    score: float | None
    duration: float = 0.0
    finished: bool = True


@dataclass(frozen=True)
class SearchContext:
    """Budget and data facts the scheduler passes with a proposal request.

    Attributes
    ----------
    remaining_seconds : float, optional
        Time left of the experiment's budget; None without a time budget.
    rows : int, optional
        Rows of the data set, once an iteration has reported them.
    """

    remaining_seconds: float | None = None
    rows: int | None = None


class Proposer(Protocol):
    """Chooses the pipeline of each new iteration."""

    def propose(self, index: int, history: list[Trial], context: SearchContext | None = None) -> Proposal:
        """Return the pipeline for iteration `index`, given the earlier ones."""
        ...


def is_full_fidelity(subsample: float) -> bool:
    """Return whether an iteration with this `subsample` used every training row."""
    return subsample <= 0 or subsample >= 1


class TPEProposer:
    """Portfolio first, then Optuna TPE over the conditional pipeline space.

    Parameters
    ----------
    task : int
        `automl.v1.Task` value.
    estimators : list of str
        Estimators the experiment allows (allowed minus blocked).
    seed : int
        With the same seed and history the same proposals follow.
    metric : str
        Primary metric; its direction comes from `catalog.higher_is_better`.
    startup_trials : int
        Random draws before TPE models the results; a very large value
        turns the proposer into portfolio-then-random search.
    """

    def __init__(self, task: int, estimators: list[str], seed: int = 0, metric: str = "accuracy",
                 startup_trials: int = STARTUP_TRIALS):
        self.task = task
        self.estimators = [name for name in catalog.ESTIMATORS[task] if name in set(estimators)]
        if not self.estimators:
            raise ValueError(f"none of the estimators {estimators} is a {catalog.TASK_NAMES[task]} estimator")
        self.seed = seed
        self.maximize = catalog.higher_is_better(metric)
        self.startup_trials = startup_trials
        self.portfolio = [Proposal(s, e, dict(h)) for s, e, h in PORTFOLIOS[task] if e in self.estimators]
        self._distributions = {"estimator": optuna.distributions.CategoricalDistribution(self.estimators)}
        for estimator in self.estimators:
            if estimator not in SCALE_FREE:
                self._distributions[f"{estimator}:scaler"] = optuna.distributions.CategoricalDistribution(
                    SCALER_CHOICES)
            for name, spec in SEARCH_SPACES[task][estimator].items():
                distribution = to_distribution(spec)
                if distribution is not None:
                    self._distributions[f"{estimator}:{name}"] = distribution

    def propose(self, index: int, history: list[Trial], context: SearchContext | None = None) -> Proposal:
        """Return a promotion to full fidelity, the next portfolio entry or a TPE sample."""
        context = context or SearchContext()
        low_fidelity = context.rows is not None and context.rows > LARGE_DATA_ROWS
        if low_fidelity:
            promoted = self._promotion(history, context.remaining_seconds)
            if promoted is not None:
                return promoted
        subsample = LOW_FIDELITY if low_fidelity else 1.0

        slow = self._slow_families(history, context.remaining_seconds)
        tried = {trial.proposal.key() for trial in history}
        for entry in self.portfolio:
            if entry.key() not in tried and entry.estimator not in slow:
                return entry.at_fidelity(subsample)
        excluded = slow | self._unfocused_families(index, history)
        if excluded >= set(self.estimators):
            excluded = slow
        if excluded >= set(self.estimators):
            # Every family is slow for the time left: the cheapest one has the best chance to end in time.
            excluded = set(self.estimators) - {self._cheapest_family(history)}
        local = self._local(index, history, tried, excluded)
        if local is not None:
            return local.at_fidelity(subsample)
        return self._sample(index, history, tried, excluded).at_fidelity(subsample)

    # Cost and fidelity

    def _slow_families(self, history: list[Trial], remaining_seconds: float | None) -> set[str]:
        if remaining_seconds is None:
            return set()
        mean_seconds = _mean_durations(history)
        return {name for name, seconds in mean_seconds.items() if seconds > COST_SHARE * remaining_seconds}

    @staticmethod
    def _cheapest_family(history: list[Trial]) -> str:
        mean_seconds = _mean_durations(history)
        return min(mean_seconds, key=mean_seconds.get)

    def _unfocused_families(self, index: int, history: list[Trial]) -> set[str]:
        """Return the families outside the `FOCUS_FAMILIES` best ones, or none on an exploration draw."""
        if random.Random(f"{self.seed}-{index}-explore").random() < EXPLORATION_SHARE:
            return set()
        best: dict[str, float] = {}
        sign = 1.0 if self.maximize else -1.0
        for trial, score in self._model_trials(history):
            if trial.finished and score is not None and math.isfinite(score):
                family = trial.proposal.estimator
                best[family] = max(best.get(family, -math.inf), sign * score)
        if len(best) <= FOCUS_FAMILIES:
            return set()
        ranked = sorted(best, key=lambda family: best[family], reverse=True)
        return set(self.estimators) - set(ranked[:FOCUS_FAMILIES])

    def _promotion(self, history: list[Trial], remaining_seconds: float | None) -> Proposal | None:
        """Return the best low-fidelity configuration worth a full-fidelity run, if any.

        A configuration whose full-fidelity run would not end in the time left
        (its low-fidelity duration scaled up by the row share) is not promoted.
        """
        full_keys = {t.proposal.key() for t in history if is_full_fidelity(t.proposal.subsample)}
        low = [t for t in history if not is_full_fidelity(t.proposal.subsample) and t.score is not None
               and math.isfinite(t.score)]
        if not low:
            return None
        ranked = sorted(low, key=lambda t: t.score, reverse=self.maximize)
        has_full_score = any(t.score is not None for t in history if is_full_fidelity(t.proposal.subsample))
        # Without any full-fidelity result there is no best model yet, so the top configuration runs at once.
        # Otherwise a top share means something only once a few low-fidelity results exist.
        if has_full_score and len(ranked) < round(1 / PROMOTION_SHARE):
            return None
        top = ranked if not has_full_score else ranked[:max(1, math.ceil(PROMOTION_SHARE * len(ranked)))]
        for trial in top:
            if trial.proposal.key() in full_keys:
                continue
            expected_seconds = trial.duration / trial.proposal.subsample
            if remaining_seconds is not None and expected_seconds > remaining_seconds:
                continue
            return trial.proposal.at_fidelity(1.0)
        return None

    # Local refinement

    def _local(self, index: int, history: list[Trial], tried: set, excluded: set[str]) -> Proposal | None:
        """Return a perturbation of one of the best configurations, or None (on 1 - `LOCAL_SHARE` of the draws)."""
        rng = random.Random(f"{self.seed}-{index}-local")
        if rng.random() >= LOCAL_SHARE:
            return None
        sign = 1.0 if self.maximize else -1.0
        scored = [(sign * score, trial) for trial, score in self._model_trials(history)
                  if trial.finished and score is not None and math.isfinite(score)
                  and trial.proposal.estimator not in excluded]
        if not scored:
            return None
        scored.sort(key=lambda pair: pair[0], reverse=True)
        parent = scored[rng.randrange(min(LOCAL_PARENTS, len(scored)))][1].proposal
        space = SEARCH_SPACES[self.task][parent.estimator]
        for _ in range(REDRAWS):
            hyperparameters = {name: perturb(rng, space[name], value) if name in space else value
                               for name, value in parent.hyperparameters.items()}
            child = Proposal(parent.scaler, parent.estimator, hyperparameters)
            if child.key() not in tried:
                return child
        return None

    # Model-based sampling

    def _sample(self, index: int, history: list[Trial], tried: set, excluded: set[str]) -> Proposal:
        study = self._study(index, history)
        for _ in range(REDRAWS):
            trial = study.ask()
            proposal = self._suggest(trial)
            if proposal.key() not in tried and proposal.estimator not in excluded:
                return proposal
            # NOTE: TPE ignores failed trials, so the next draw often picks the same excluded family again,
            # and many focused proposals come from `_fallback` (see the module docstring).
            study.tell(trial, state=TrialState.FAIL)
        return self._fallback(index, tried, excluded)

    def _study(self, index: int, history: list[Trial]) -> optuna.Study:
        with warnings.catch_warnings():
            # multivariate and group are marked experimental in Optuna 5.0.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                seed=(self.seed * 1_000_003 + index) % 2**32, multivariate=True, group=True, constant_liar=True,
                n_startup_trials=self.startup_trials)
        study = optuna.create_study(direction="maximize" if self.maximize else "minimize", sampler=sampler)
        for trial, score in self._model_trials(history):
            params = self._params(trial.proposal)
            distributions = {name: self._distributions[name] for name in params}
            if not trial.finished:
                state, value = TrialState.RUNNING, None
            elif score is None or not math.isfinite(score):
                state, value = TrialState.FAIL, None
            else:
                state, value = TrialState.COMPLETE, score
            study.add_trial(create_trial(state=state, value=value, params=params, distributions=distributions))
        return study

    def _model_trials(self, history: list[Trial]) -> list[tuple[Trial, float | None]]:
        """Return one trial per configuration with the score TPE learns from.

        Low-fidelity scores are usually lower than full-fidelity ones, so when a
        configuration has both, TPE gets its low-fidelity score, the scale
        on which new configurations are compared.
        """
        chosen: dict[tuple, Trial] = {}
        for trial in history:
            if trial.proposal.estimator not in self.estimators:
                continue
            key = trial.proposal.key()
            current = chosen.get(key)
            if current is None or (trial.finished and trial.score is not None and (
                    current.score is None or not is_full_fidelity(trial.proposal.subsample))):
                chosen[key] = trial
        return [(trial, trial.score) for trial in chosen.values()]

    def _suggest(self, trial: optuna.Trial) -> Proposal:
        """Draw the estimator, then its scaler and hyperparameters, from the trial."""
        estimator = trial.suggest_categorical("estimator", self.estimators)
        scaler = "None"
        if estimator not in SCALE_FREE:
            scaler = trial.suggest_categorical(f"{estimator}:scaler", SCALER_CHOICES)
        hyperparameters = {}
        for name, spec in SEARCH_SPACES[self.task][estimator].items():
            distribution = to_distribution(spec)
            hyperparameters[name] = spec if distribution is None else \
                _suggest_value(trial, f"{estimator}:{name}", distribution)
        return Proposal(scaler, estimator, hyperparameters)

    def _params(self, proposal: Proposal) -> dict:
        """Return the Optuna parameters of a proposal, leaving out values outside the space."""
        estimator = proposal.estimator
        params = {"estimator": estimator}
        scaler_name = f"{estimator}:scaler"
        if scaler_name in self._distributions and proposal.scaler in SCALER_CHOICES:
            params[scaler_name] = proposal.scaler
        for name, value in proposal.hyperparameters.items():
            distribution = self._distributions.get(f"{estimator}:{name}")
            if distribution is None:
                continue
            value = _as_space_value(distribution, value)
            if value is not None or isinstance(distribution, optuna.distributions.CategoricalDistribution):
                try:
                    distribution.to_internal_repr(value)
                except (ValueError, TypeError):
                    continue
                if _contains(distribution, value):
                    params[f"{estimator}:{name}"] = value
        return params

    def _fallback(self, index: int, tried: set, excluded: set[str]) -> Proposal:
        """Return a random configuration of a family not excluded (of any family when all of them are)."""
        rng = random.Random(f"{self.seed}-{index}")
        families = [name for name in self.estimators if name not in excluded] or self.estimators
        proposal = self._random(rng, families)
        for _ in range(REDRAWS):
            if proposal.key() not in tried:
                break
            proposal = self._random(rng, families)
        return proposal

    def _random(self, rng: random.Random, families: list[str]) -> Proposal:
        estimator = rng.choice(families)
        scaler = "None" if estimator in SCALE_FREE else rng.choice(SCALER_CHOICES)
        space = SEARCH_SPACES[self.task][estimator]
        return Proposal(scaler, estimator, {name: sample_random(rng, spec) for name, spec in space.items()})


def _mean_durations(history: list[Trial]) -> dict[str, float]:
    """Return the mean iteration time of each estimator family with a finished, timed iteration."""
    durations: dict[str, list[float]] = {}
    for trial in history:
        if trial.finished and trial.duration > 0:
            durations.setdefault(trial.proposal.estimator, []).append(trial.duration)
    return {name: sum(times) / len(times) for name, times in durations.items()}


def _suggest_value(trial: optuna.Trial, name: str, distribution):
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_categorical(name, distribution.choices)


def _as_space_value(distribution, value):
    # Struct values come back as floats: 200.0 must match an integer distribution.
    if isinstance(distribution, optuna.distributions.IntDistribution) and isinstance(value, float) \
            and value.is_integer():
        return int(value)
    return value


def _contains(distribution, value) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return distribution.low <= value <= distribution.high
