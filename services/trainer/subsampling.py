"""Row subsampling for low-fidelity iterations on large data sets."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def subsample_rows(rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int,
                   stratify: bool) -> np.ndarray:
    """Return a seeded subset of `rows` holding about `fraction` of them.

    Parameters
    ----------
    rows : numpy.ndarray
        Row positions to draw from, such as the training rows of one fold.
    labels : numpy.ndarray
        Labels of every row of the data set, indexed by position.
    fraction : float
        Share of `rows` to keep; 1.0 or more keeps every row.
    seed : int
        Seed of the draw, so an iteration is reproducible.
    stratify : bool
        Keep the class proportions (classification). Falls back to a plain
        random draw when a class has too few rows to stratify.

    Returns
    -------
    numpy.ndarray
        The kept row positions, sorted.
    """
    if fraction >= 1.0 or len(rows) < 2:
        return rows
    classes = np.unique(labels[rows]) if stratify else np.array([])
    # Every class needs a row in the subset, or a classifier would not know it exists.
    size = max(int(round(fraction * len(rows))), len(classes), 1)
    if size >= len(rows):
        return rows
    random_state = seed % 2**32
    kept = None
    if stratify:
        try:
            kept, _ = train_test_split(rows, train_size=size, stratify=labels[rows], random_state=random_state)
        except ValueError:
            kept = None
    if kept is None:
        kept = np.random.default_rng(random_state).choice(rows, size=size, replace=False)
    return np.sort(kept)
