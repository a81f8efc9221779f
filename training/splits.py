"""Patient-level splits: no patient is ever on both sides of a split."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from hquery.errors import SplitLeakError


def check_patient_disjoint(patients: Sequence[str], train: np.ndarray, test: np.ndarray) -> None:
    shared = set(np.asarray(patients)[train]) & set(np.asarray(patients)[test])
    if shared:
        raise SplitLeakError(f"patients on both sides of a split: {', '.join(sorted(shared)[:5])}")


def patient_folds(patients: Sequence[str], n_folds: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(train_index, test_index)`` for each of ``n_folds`` patient-grouped folds (shuffled by ``seed``)."""
    from sklearn.model_selection import GroupKFold

    patients = np.asarray(patients)
    n_patients = len(set(patients))
    if n_folds < 2 or n_folds > n_patients:
        raise ValueError(f"{n_folds} folds need between 2 and {n_patients} (the number of patients)")
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(len(patients)), groups=patients):
        check_patient_disjoint(patients, train, test)
        yield train, test


def patient_holdout(patients: Sequence[str], fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One patient-grouped ``(train_index, holdout_index)`` split, e.g. for early stopping."""
    from sklearn.model_selection import GroupShuffleSplit

    patients = np.asarray(patients)
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train, holdout = next(splitter.split(np.zeros(len(patients)), groups=patients))
    check_patient_disjoint(patients, train, holdout)
    return train, holdout
