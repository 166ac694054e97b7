"""Shared data checks on in-memory tables: label types, missing labels, validation plans."""

import numpy as np
import pandas as pd
import pytest

from automl.common import catalog
from automl.common.data_checks import budget_validation, check_table, check_validation
from automl.common.datasets import Table
from automl.common.errors import InvalidArgument


def table(labels: list, features: dict | None = None) -> Table:
    features = features or {"x": np.arange(len(labels), dtype=float)}
    return Table(features=pd.DataFrame(features), labels=pd.Series(labels, name="y", dtype=object), label_column="y")


def violations(error: InvalidArgument) -> dict[str, str]:
    return {v.field: v.description for v in error.violations}


def test_mixed_label_types_read_as_text():
    checked = check_table(table(["0", "1", 3, 4] * 5), catalog.CLASSIFICATION, False, 2, 0.0, "s3://b/k.csv")

    assert sorted(checked.labels.unique()) == ["0", "1", "3", "4"]
    assert [w.name for w in checked.warnings] == ["label_types"]
    assert "int, str" in checked.warnings[0].description


def test_mixed_label_types_colliding_as_text():
    with pytest.raises(InvalidArgument) as raised:
        check_table(table(["1", 1, "2", 2] * 5), catalog.CLASSIFICATION, False, 2, 0.0, "s3://b/k.csv")

    assert "'y'" in violations(raised.value)["dataset.label_column"]
    assert "one type" in violations(raised.value)["dataset.label_column"]


def numeric_table(labels: np.ndarray) -> Table:
    return Table(features=pd.DataFrame({"x": np.arange(len(labels), dtype=float)}), labels=pd.Series(labels, name="y"),
                 label_column="y")


def test_regression_target_as_classes_rejected():
    labels = np.round(np.linspace(2.33, 80.0, 100), 2)

    with pytest.raises(InvalidArgument) as raised:
        check_table(numeric_table(labels), catalog.CLASSIFICATION, False, 3, 0.0, "s3://b/k.csv")

    message = violations(raised.value)["task"]
    assert "100 distinct numbers" in message
    assert "2.33" in message
    assert "regression" in message


@pytest.mark.parametrize("labels", [np.tile([0.0, 1.0], 50), np.tile(np.arange(30, dtype=float), 4),
                                    np.tile([0.5, 1.5, 2.5], 30)])
def test_whole_or_few_numeric_classes_kept(labels):
    checked = check_table(numeric_table(labels), catalog.CLASSIFICATION, False, 3, 0.0, "s3://b/k.csv")

    assert len(checked.labels) == len(labels)


def test_missing_labels_dropped_with_warning():
    labels = ["a", "b", None, "a", "b", "a", np.nan, "b"]
    checked = check_table(table(labels), catalog.CLASSIFICATION, False, 2, 0.0, "s3://b/k.csv")

    assert len(checked.labels) == 6
    assert len(checked.features) == 6
    assert checked.warnings[0].name == "missing_labels"
    assert checked.warnings[0].details["dropped_rows"] == "2"


def test_default_folds_name_row_count():
    with pytest.raises(InvalidArgument) as raised:
        check_validation(catalog.CLASSIFICATION, np.array(["a"] * 20 + ["b"] * 4), 0, 0.0)

    message = violations(raised.value)["validation.n_cross_validations"]
    assert "class 'b' has 4 rows" in message
    assert "10 folds, chosen for 24 rows" in message


@pytest.mark.parametrize("rows, columns, budget_minutes, expected", [
    (2000, 40, 0.5, 0.1),     # 88,889 cells against 83,333 for half a minute
    (2000, 40, 1.0, 0.0),     # against 166,667 for a minute
    (12000, 30, 1.0, 0.1),
    (12000, 30, 60.0, 0.0),
    (10**6, 100, 0.0, 0.0),   # no budget: the row-count rule decides
])
def test_budget_validation_threshold(rows, columns, budget_minutes, expected):
    assert budget_validation(rows, columns, budget_minutes) == expected
