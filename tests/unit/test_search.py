"""TPE proposer: reproducible, within the allowed models, portfolio first, better than random search."""

import math
import random

import pytest

from automl.common import catalog
from services.orchestrator import search, search_space
from services.orchestrator.search import SearchContext, TPEProposer, Trial
from services.orchestrator.search_space import PORTFOLIOS, SEARCH_SPACES

CLASSIFIERS = list(catalog.ESTIMATORS[catalog.CLASSIFICATION])


def run_proposer(seed, estimators, count=30, score=lambda proposal: 0.5, metric="accuracy", **options):
    proposer = TPEProposer(catalog.CLASSIFICATION, estimators, seed, metric, **options)
    history = []
    for index in range(count):
        proposal = proposer.propose(index, history)
        history.append(Trial(proposal, score(proposal), duration=1.0))
    return [trial.proposal for trial in history]


def synthetic_score(proposal):
    """Peak of 1.0 at LightGBM with learning_rate 0.2 and 8 leaves, away from the portfolio; others score 0.6."""
    if proposal.estimator != "LightGBM":
        return 0.6
    params = proposal.hyperparameters
    distance = (math.log10(params["learning_rate"] / 0.2)) ** 2 + (math.log2(params["num_leaves"] / 8) / 3) ** 2
    return 1.0 - 0.3 * distance


def test_same_seed_same_proposals():
    first = run_proposer(3, CLASSIFIERS, count=16, score=synthetic_score)

    assert first == run_proposer(3, CLASSIFIERS, count=16, score=synthetic_score)
    assert first != run_proposer(4, CLASSIFIERS, count=16, score=synthetic_score)


def test_portfolio_comes_first():
    proposals = run_proposer(0, CLASSIFIERS, count=len(PORTFOLIOS[catalog.CLASSIFICATION]))

    assert [(p.scaler, p.estimator, p.hyperparameters) for p in proposals] == [
        (s, e, h) for s, e, h in PORTFOLIOS[catalog.CLASSIFICATION]]


def test_only_allowed_estimators():
    proposals = run_proposer(1, ["KNN", "SVM"])

    assert {p.estimator for p in proposals} == {"KNN", "SVM"}


def test_every_space_samples_known_scalers():
    for task, spaces in SEARCH_SPACES.items():
        assert set(spaces) == set(catalog.ESTIMATORS[task])
    proposals = run_proposer(2, CLASSIFIERS, count=40)

    assert {p.scaler for p in proposals} <= set(catalog.SCALERS)
    assert len({p.key() for p in proposals}) == 40


def test_regression_proposals_fit_the_task():
    proposer = TPEProposer(catalog.REGRESSION, list(catalog.ESTIMATORS[catalog.REGRESSION]), 0,
                           "normalized_root_mean_squared_error")
    history = []
    for index in range(20):
        proposal = proposer.propose(index, history)
        history.append(Trial(proposal, 0.1))

    assert {t.proposal.estimator for t in history} <= set(catalog.ESTIMATORS[catalog.REGRESSION])


def best_synthetic_score(seeds, startup_trials, metric="accuracy", sign=1.0):
    """Mean over seeds of the best synthetic score within 30 proposals."""
    results = []
    for seed in seeds:
        proposals = run_proposer(seed, CLASSIFIERS, count=30, metric=metric, startup_trials=startup_trials,
                                 score=lambda p: sign * synthetic_score(p))
        results.append(max(synthetic_score(p) for p in proposals))
    return sum(results) / len(results)


def test_tpe_beats_random_search():
    tpe = best_synthetic_score(range(3), search.STARTUP_TRIALS)
    random_search = best_synthetic_score(range(3), 10**6)

    assert tpe > random_search
    assert tpe > 0.95


def test_tpe_minimizes_error_metrics():
    # log_loss is lower-is-better: the search must move towards the lowest reported values.
    assert best_synthetic_score([0], search.STARTUP_TRIALS, "log_loss", -1.0) > 0.95


def test_slow_families_skipped_near_the_end():
    proposer = TPEProposer(catalog.CLASSIFICATION, CLASSIFIERS, 0, "accuracy")
    history = []
    for index in range(20):
        # With 60 s left, a 40 s SVM is over the share of the remaining time.
        proposal = proposer.propose(index, history, SearchContext(remaining_seconds=60.0))
        duration = 40.0 if proposal.estimator == "SVM" else 1.0
        history.append(Trial(proposal, 0.7, duration))

    assert [t.proposal.estimator for t in history].count("SVM") <= 1


def test_large_data_low_fidelity_then_promotion():
    proposer = TPEProposer(catalog.CLASSIFICATION, CLASSIFIERS, 0, "AUC_weighted")
    context = SearchContext(rows=100_000)
    history = []
    for index in range(12):
        proposal = proposer.propose(index, history, context)
        history.append(Trial(proposal, synthetic_score(proposal)))
    fidelities = [t.proposal.subsample for t in history]
    low = [t for t in history if t.proposal.subsample < 1]
    full = [t for t in history if t.proposal.subsample == 1.0]

    assert fidelities[0] == search.LOW_FIDELITY
    assert full, "no configuration ran again on every row"
    # The first promotion is the best low-fidelity configuration seen so far.
    first_full = fidelities.index(1.0)
    before = [t for t in history[:first_full] if t.proposal.subsample < 1]
    assert full[0].proposal.key() == max(before, key=lambda t: t.score).proposal.key()
    assert {t.proposal.key() for t in full} <= {t.proposal.key() for t in low}


def test_pending_iterations_not_repeated():
    proposer = TPEProposer(catalog.CLASSIFICATION, ["LightGBM"], 0, "accuracy")
    history = []
    for index in range(8):
        history.append(Trial(proposer.propose(index, history), None, finished=False))

    assert len({t.proposal.key() for t in history}) == 8


def test_no_allowed_estimator_of_task_rejected():
    with pytest.raises(ValueError):
        TPEProposer(catalog.REGRESSION, ["SVM"], 0, "r2_score")


def test_promotion_waits_for_a_few_low_fidelity_results():
    proposer = TPEProposer(catalog.CLASSIFICATION, CLASSIFIERS, 0, "AUC_weighted")
    context = SearchContext(rows=100_000)
    portfolio = proposer.portfolio
    history = [Trial(portfolio[0], 0.9)]
    history += [Trial(portfolio[i].at_fidelity(search.LOW_FIDELITY), 0.80 + 0.01 * i) for i in (1, 2)]

    assert proposer.propose(3, history, context).subsample == search.LOW_FIDELITY

    history += [Trial(portfolio[i].at_fidelity(search.LOW_FIDELITY), 0.80 + 0.01 * i) for i in (3, 4)]
    promoted = proposer.propose(5, history, context)

    assert promoted.subsample == 1.0
    assert promoted.key() == portfolio[4].key()


def test_promotion_skipped_without_time():
    proposer = TPEProposer(catalog.CLASSIFICATION, CLASSIFIERS, 0, "AUC_weighted")
    portfolio = proposer.portfolio
    # 5 s on a quarter of the rows: about 20 s on every row.
    history = [Trial(portfolio[i].at_fidelity(search.LOW_FIDELITY), 0.80 + 0.01 * i, duration=5.0)
               for i in range(4)]

    assert proposer.propose(4, history, SearchContext(remaining_seconds=10.0, rows=100_000)).subsample \
        == search.LOW_FIDELITY
    assert proposer.propose(4, history, SearchContext(remaining_seconds=30.0, rows=100_000)).subsample == 1.0


def test_search_focuses_on_the_best_families():
    leaders = {"LightGBM": 0.9, "XGBoostClassifier": 0.88, "LogisticRegression": 0.87}
    portfolio_size = len(PORTFOLIOS[catalog.CLASSIFICATION])
    proposals = run_proposer(0, CLASSIFIERS, count=portfolio_size + 30,
                             score=lambda proposal: leaders.get(proposal.estimator, 0.6))
    searched = [p.estimator for p in proposals[portfolio_size:]]
    focused = sum(estimator in leaders for estimator in searched)

    # Exploration draws keep the other families possible, but most draws go to the leaders.
    assert focused >= 0.7 * len(searched)
    assert focused < len(searched)


def test_cheapest_family_when_every_family_is_slow():
    proposer = TPEProposer(catalog.CLASSIFICATION, ["LightGBM", "KNN"], 0, "accuracy")
    history = []
    for index in range(6):
        proposal = proposer.propose(index, history)
        history.append(Trial(proposal, 0.9 if proposal.estimator == "LightGBM" else 0.7,
                             duration=20.0 if proposal.estimator == "LightGBM" else 8.0))

    # With 4 s left both families are slow; KNN, the cheaper one, still has a chance to end in time.
    assert proposer.propose(6, history, SearchContext(remaining_seconds=4.0)).estimator == "KNN"


def test_perturb_stays_in_bounds():
    rng = random.Random(0)
    for _ in range(200):
        assert 16 <= search_space.perturb(rng, ("logint", 16, 4000), 3990) <= 4000
        assert isinstance(search_space.perturb(rng, ("int", 2, 12), 3.0), int)
        assert 0.3 <= search_space.perturb(rng, ("float", 0.3, 1.0), 0.31) <= 1.0
        assert search_space.perturb(rng, ("choice", ["gini", "entropy"]), "gini") in {"gini", "entropy"}
    assert search_space.perturb(rng, 1, 1) == 1


def test_local_proposals_perturb_the_best():
    proposer = TPEProposer(catalog.CLASSIFICATION, CLASSIFIERS, 0, "accuracy")
    history = []
    for index in range(len(PORTFOLIOS[catalog.CLASSIFICATION])):
        proposal = proposer.propose(index, history)
        history.append(Trial(proposal, {"LightGBM": 0.9, "RandomForest": 0.8}.get(proposal.estimator, 0.5)))
    parents = {t.proposal.key(): t.proposal for t in history if t.score >= 0.8}
    drawn = [proposer._local(index, history, set(), set()) for index in range(100)]
    local = [proposal for proposal in drawn if proposal is not None]

    # About LOCAL_SHARE of the draws are local, each a small step from one of the best configurations.
    assert 30 <= len(local) <= 70
    for child in local:
        assert child.estimator in {"LightGBM", "RandomForest"}
        assert child.key() not in parents
        nearest = min((p for p in parents.values() if p.estimator == child.estimator),
                      key=lambda p: sum(abs(math.log(child.hyperparameters[k] / v)) for k, v in p.hyperparameters.items()
                                        if isinstance(v, (int, float)) and v > 0))
        for name, value in nearest.hyperparameters.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                assert abs(math.log(child.hyperparameters[name] / value)) < 2.5, (name, value, child)
