"""Featurization of raw tabular columns, as the first step of a fitted pipeline.

`Featurizer` detects each raw column's type (numeric, categorical, datetime,
text or ID-like), drops columns that cannot help (all values missing,
constant, ID-like), imputes, encodes and expands the rest into one numeric
matrix. It lives in `automl.common` because it is stored inside fitted models,
and its fitted state holds only plain values, numpy arrays and scikit-learn
estimators, so it round-trips through skops.

Engineered feature names start with the raw column names verbatim, spaces,
quotes and brackets included. They appear only in `get_feature_names_out` and
in the summary, because the estimator receives a plain numpy array.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import OneHotEncoder, TargetEncoder
from sklearn.utils.validation import check_is_fitted

NUMERIC, CATEGORICAL, DATETIME, TEXT, ID = "numeric", "categorical", "datetime", "text", "id"

# Strings such as 2016-07-02, 07/02/2016 or 2016.07.02 12:30, checked before the slower date parsing.
_DATE_LIKE = re.compile(r"^\s*\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*$")
_DATE_PARTS = ("year", "month", "day", "day_of_week", "day_of_year")
_TIME_PARTS = ("hour", "minute")


def _missing(series: pd.Series) -> np.ndarray:
    return series.isna().to_numpy()


def parse_numbers(series: pd.Series) -> pd.Series:
    """Return the column as floats; strings such as `1,234` or ` 12.5 ` are parsed, others become NaN."""
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    # NOTE: commas are read as thousands separators, so a decimal comma such as `12,5` becomes 125.
    text = series.astype("string").str.replace(",", "", regex=False).str.strip()
    return pd.to_numeric(text, errors="coerce").astype(float)


def _parse_dates(series: pd.Series, date_format: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pd.to_datetime(series.astype("string"), errors="coerce", format=date_format, utc=True)


def _as_categories(series: pd.Series) -> np.ndarray:
    """Return the column as an object array of strings, with None where values are missing."""
    values = series.astype(object).to_numpy()
    missing = _missing(series)
    out = np.empty(len(values), dtype=object)
    out[~missing] = [str(v) for v in values[~missing]]
    out[missing] = None
    return out


def _date_format(non_missing: pd.Series) -> str | None:
    """Return the pandas format that parses nearly all of the values as dates, or None."""
    sample = non_missing.astype(str).head(200)
    if sample.map(lambda v: bool(_DATE_LIKE.match(v))).mean() < 0.9:
        return None
    for date_format in ("ISO8601", "mixed"):
        parsed = _parse_dates(non_missing, date_format)
        if parsed.notna().mean() >= 0.95:
            return date_format
    return None


class Featurizer(TransformerMixin, BaseEstimator):
    """Turn raw tabular columns into a numeric feature matrix.

    Parameters
    ----------
    max_one_hot : int, default 30
        Categorical columns with at most this many distinct values are one-hot
        encoded; columns with more are target encoded (frequency encoded when
        fitted without labels).
    id_ratio : float, default 0.95
        Integer and string columns whose share of distinct values reaches this
        are ID-like and dropped.
    max_text_features : int, default 100
        Most TF-IDF terms kept per text column.
    target_type : str, default "auto"
        `target_type` of scikit-learn's TargetEncoder: `continuous` for
        regression, `auto` lets it tell binary from multiclass labels.
    random_state : int, default 0
        Seed of the target encoder's cross fitting.

    Attributes
    ----------
    plan_ : list of dict
        Fitted state of each kept column, in data set order.
    summary_ : list of dict
        Per raw column: detected type, whether and why it was dropped,
        engineered feature count, transformations, missing count and fill,
        distinct count.
    feature_names_in_ : ndarray
        Raw column names seen in fit.
    """

    def __init__(self, max_one_hot: int = 30, id_ratio: float = 0.95, max_text_features: int = 100,
                 target_type: str = "auto", random_state: int = 0):
        self.max_one_hot = max_one_hot
        self.id_ratio = id_ratio
        self.max_text_features = max_text_features
        self.target_type = target_type
        self.random_state = random_state

    def fit(self, X, y=None):
        """Detect column types and fit imputers and encoders on `X`."""
        self._fit(self._frame(X, fitting=True), y)
        return self

    def fit_transform(self, X, y=None, **fit_params):
        """Fit, then transform; target encodings of `X` itself come from cross fitting, so they do not leak `y`."""
        frame = self._frame(X, fitting=True)
        cross_fitted = self._fit(frame, y)
        return self._transform(frame, cross_fitted)

    def transform(self, X):
        """Return the engineered feature matrix of raw rows `X`."""
        check_is_fitted(self, "plan_")
        return self._transform(self._frame(X), {})

    def get_feature_names_out(self, input_features=None):
        """Return the engineered feature names; each starts with its raw column name verbatim."""
        check_is_fitted(self, "plan_")
        return np.asarray([name for step in self.plan_ for name in step["features"]], dtype=object)

    # Fitting

    def _frame(self, X, fitting: bool = False) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            array = np.asarray(X, dtype=object)
            if array.ndim != 2:
                raise ValueError(f"Featurizer expects a 2-D table, got an array of shape {array.shape}")
            names = getattr(self, "feature_names_in_", None)
            columns = list(names) if names is not None and len(names) == array.shape[1] and not fitting \
                else [f"x{i}" for i in range(array.shape[1])]
            X = pd.DataFrame(array, columns=columns).infer_objects()
        if fitting:
            return X.reset_index(drop=True)
        absent = [str(c) for c in self.feature_names_in_ if c not in X.columns]
        if absent:
            raise ValueError(f"the rows are missing the columns {absent[:20]} that the model was fitted on; add them")
        return X.reset_index(drop=True)

    def _fit(self, frame: pd.DataFrame, y) -> dict[int, np.ndarray]:
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        self.plan_, self.summary_ = [], []
        cross_fitted = {}
        for column in frame.columns:
            series = frame[column]
            summary = {"column": str(column), "detected_type": "", "dropped": False, "drop_reason": "",
                       "engineered_feature_count": 0, "transformations": [],
                       "missing_count": int(series.isna().sum()), "missing_fill": "",
                       "distinct_count": int(series.nunique(dropna=True))}
            kind, reason, detail = self._detect(series)
            summary["detected_type"] = kind
            step = None
            if not reason:
                step, reason = self._fit_column(column, kind, detail, series, y, summary)
            if reason:
                summary.update(dropped=True, drop_reason=reason, transformations=[], missing_fill="")
            else:
                if step.pop("cross_fitted", None) is not None:
                    cross_fitted[len(self.plan_)] = step.pop("cross_fitted_values")
                summary["engineered_feature_count"] = len(step["features"])
                self.plan_.append(step)
            self.summary_.append(summary)
        if not self.plan_:
            reasons = "; ".join(f"{e['column']}: {e['drop_reason']}" for e in self.summary_[:10])
            raise ValueError(f"no column is usable as a feature ({reasons})")
        return cross_fitted

    def _detect(self, series: pd.Series) -> tuple[str, str, object]:
        """Return the column's type, a drop reason (empty to keep it) and what parsing needs."""
        non_missing = series.dropna()
        numeric_dtype = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        if non_missing.empty:
            return (NUMERIC if numeric_dtype else CATEGORICAL), "all values missing", None
        distinct = non_missing.nunique()
        if distinct == 1 and len(non_missing) == len(series):
            return (NUMERIC if numeric_dtype else CATEGORICAL), f"constant: every value is {non_missing.iloc[0]!r}", None
        if pd.api.types.is_datetime64_any_dtype(series):
            return DATETIME, "", None
        is_id = len(non_missing) >= 20 and distinct / len(non_missing) >= self.id_ratio
        if numeric_dtype:
            if is_id and pd.api.types.is_integer_dtype(series):
                return ID, f"ID-like: {distinct} distinct integers in {len(non_missing)} rows", None
            return NUMERIC, "", None
        if isinstance(series.dtype, pd.CategoricalDtype):
            return CATEGORICAL, "", None

        # Parsing each distinct value once is enough to tell the type, and much faster on long columns.
        uniques = pd.Series(non_missing.astype(str).unique())
        if parse_numbers(uniques).notna().all():
            return NUMERIC, "", "parse"
        date_format = _date_format(uniques)
        if date_format:
            return DATETIME, "", date_format
        if uniques.str.split().str.len().mean() >= 3 and distinct / len(non_missing) >= 0.3:
            return TEXT, "", None
        if is_id:
            return ID, f"ID-like: {distinct} distinct values in {len(non_missing)} rows", None
        return CATEGORICAL, "", None

    def _fit_column(self, column, kind: str, detail, series: pd.Series, y, summary: dict) -> tuple[dict | None, str]:
        name, missing = str(column), _missing(series)
        step = {"column": column, "kind": kind}
        transformations = summary["transformations"]

        if kind == NUMERIC:
            values = parse_numbers(series)
            step.update(median=float(np.nanmedian(values.to_numpy())), indicator=bool(missing.any()))
            step["features"] = [name] + ([f"{name}_missing"] if missing.any() else [])
            if detail == "parse":
                transformations.append("NumberParser")
            if missing.any():
                transformations += ["MedianImputer", "MissingIndicator"]
                summary["missing_fill"] = "median"

        elif kind == CATEGORICAL:
            values = _as_categories(series)
            present = values[~missing]
            uniques, counts = np.unique(present.astype(str), return_counts=True)
            step["fill"] = str(uniques[np.argmax(counts)])
            values[missing] = step["fill"]
            if missing.any():
                transformations.append("ModeImputer")
                summary["missing_fill"] = "most frequent"
            if len(uniques) <= self.max_one_hot:
                encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64)
                encoder.fit(values.reshape(-1, 1))
                step.update(encoding="one_hot", encoder=encoder,
                            features=[f"{name}_{category}" for category in encoder.categories_[0]])
                transformations.append("OneHotEncoder")
            elif y is not None:
                splitter = KFold if self.target_type == "continuous" else StratifiedKFold
                encoder = TargetEncoder(target_type=self.target_type,
                                        cv=splitter(5, shuffle=True, random_state=self.random_state))
                step["cross_fitted_values"] = encoder.fit_transform(values.reshape(-1, 1), np.asarray(y))
                step["cross_fitted"] = True
                outputs = encoder.transform(values[:1].reshape(-1, 1)).shape[1]
                suffixes = ["target"] if outputs == 1 else [f"target_{c}" for c in encoder.classes_]
                step.update(encoding="target", encoder=encoder, features=[f"{name}_{s}" for s in suffixes])
                transformations.append("TargetEncoder")
            else:
                categories, category_counts = np.unique(values.astype(str), return_counts=True)
                frequencies = {str(category): float(count) / len(values)
                               for category, count in zip(categories, category_counts)}
                step.update(encoding="frequency", frequencies=frequencies, features=[f"{name}_frequency"])
                transformations.append("FrequencyEncoder")

        elif kind == DATETIME:
            parsed = _parse_dates(series, detail or "ISO8601")
            parsed_missing = parsed.isna().to_numpy()
            parts = list(_DATE_PARTS)
            valid = parsed[~parsed_missing]
            if (valid.dt.hour != 0).any() or (valid.dt.minute != 0).any():
                parts += list(_TIME_PARTS)
            matrix = _date_parts(parsed, parts)
            step.update(date_format=detail or "ISO8601", parts=parts,
                        fills=[float(v) for v in np.nanmedian(matrix, axis=0)], indicator=bool(parsed_missing.any()))
            step["features"] = [f"{name}_{part}" for part in parts] + ([f"{name}_missing"] if parsed_missing.any()
                                                                         else [])
            transformations += (["DateTimeParser"] if detail else []) + ["DateTimeExpander"]
            if parsed_missing.any():
                transformations += ["MedianImputer", "MissingIndicator"]
                summary["missing_fill"] = "median of each date part"

        elif kind == TEXT:
            vectorizer = TfidfVectorizer(max_features=self.max_text_features, sublinear_tf=True, dtype=np.float64)
            try:
                vectorizer.fit(series.fillna("").astype(str))
            except ValueError:
                return None, "text without any words"
            step.update(vectorizer=vectorizer,
                        features=[f"{name}_tfidf_{term}" for term in vectorizer.get_feature_names_out()])
            transformations.append("TfidfVectorizer")
            if missing.any():
                summary["missing_fill"] = "empty text"
        return step, ""

    # Transforming

    def _transform(self, frame: pd.DataFrame, cross_fitted: dict[int, np.ndarray]) -> np.ndarray:
        blocks = []
        for index, step in enumerate(self.plan_):
            if index in cross_fitted:
                blocks.append(np.asarray(cross_fitted[index], dtype=float))
                continue
            blocks.append(self._transform_column(step, frame[step["column"]]))
        if not blocks:
            return np.zeros((len(frame), 0))
        return np.column_stack(blocks).astype(np.float64)

    @staticmethod
    def _transform_column(step: dict, series: pd.Series) -> np.ndarray:
        kind = step["kind"]
        if kind == NUMERIC:
            values = parse_numbers(series).to_numpy()
            missing = np.isnan(values)
            filled = np.where(missing, step["median"], values)
            return np.column_stack([filled, missing.astype(float)]) if step["indicator"] else filled.reshape(-1, 1)

        if kind == CATEGORICAL:
            values = _as_categories(series)
            values[_missing(series)] = step["fill"]
            if step["encoding"] == "frequency":
                frequencies = step["frequencies"]
                return np.asarray([frequencies.get(v, 0.0) for v in values], dtype=float).reshape(-1, 1)
            with warnings.catch_warnings():
                # Unseen categories are expected on new rows: all-zero one-hot, the target mean.
                warnings.simplefilter("ignore", UserWarning)
                return np.asarray(step["encoder"].transform(values.reshape(-1, 1)), dtype=float)

        if kind == DATETIME:
            parsed = _parse_dates(series, step["date_format"])
            matrix = _date_parts(parsed, step["parts"])
            missing = np.isnan(matrix).any(axis=1)
            matrix = np.where(np.isnan(matrix), np.asarray(step["fills"]), matrix)
            return np.column_stack([matrix, missing.astype(float)]) if step["indicator"] else matrix

        return step["vectorizer"].transform(series.fillna("").astype(str)).toarray()


def _date_parts(parsed: pd.Series, parts: list[str]) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        parsed = pd.to_datetime(parsed, errors="coerce", utc=True)
    return np.column_stack([getattr(parsed.dt, part).to_numpy(dtype=float, na_value=np.nan)
                            for part in parts])


__all__ = ["Featurizer", "NUMERIC", "CATEGORICAL", "DATETIME", "TEXT", "ID"]
