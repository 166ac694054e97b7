"""Portfolio-then-random proposer: reproducible, within the allowed models."""

from automl.common import catalog
from services.orchestrator.search import SEARCH_SPACES, PortfolioRandomProposer, Trial


def run_proposer(seed, estimators, count=30):
    proposer = PortfolioRandomProposer(catalog.CLASSIFICATION, estimators, seed)
    history = []
    for index in range(count):
        proposal = proposer.propose(index, history)
        history.append(Trial(proposal, 0.5))
    return [trial.proposal for trial in history]


def test_same_seed_same_proposals():
    estimators = list(catalog.ESTIMATORS[catalog.CLASSIFICATION])

    assert run_proposer(3, estimators) == run_proposer(3, estimators)
    assert run_proposer(3, estimators) != run_proposer(4, estimators)


def test_portfolio_comes_first():
    proposals = run_proposer(0, list(catalog.ESTIMATORS[catalog.CLASSIFICATION]), count=3)

    assert [p.description for p in proposals] == [
        "StandardScaler LogisticRegression", "StandardScaler SVM", "RandomForest"]


def test_only_allowed_estimators():
    proposals = run_proposer(1, ["KNN", "SVM"])

    assert {p.estimator for p in proposals} == {"KNN", "SVM"}


def test_every_space_samples_known_scalers():
    for task, spaces in SEARCH_SPACES.items():
        assert set(spaces) == set(catalog.ESTIMATORS[task])
    proposals = run_proposer(2, list(catalog.ESTIMATORS[catalog.CLASSIFICATION]), count=60)

    assert {p.scaler for p in proposals} <= set(catalog.SCALERS)
    assert len({p.key() for p in proposals}) == 60
