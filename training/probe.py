"""How much expression a set of image features carries: the HEST-Benchmark linear probe.

The protocol of HEST-Benchmark (Jaume et al., 2024), which the PEKA paper uses
to compare frozen, LoRA- and PEKA-adapted encoders: features are standardised,
reduced by PCA to 256 dimensions (both fitted on the training folds), and a ridge
regression (lsqr, no intercept, ``alpha = 100 / (n_features · n_genes)``)
predicts the log expression of the 50 most variable genes. The score is the
Pearson r per gene on held-out patients, averaged over genes, then reported as
mean ± sd over patient-level folds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from hquery.stats import most_variable, pearson_per_column
from hquery.training.splits import patient_folds


@dataclasses.dataclass
class ProbeReport:
    genes: list[str]
    fold_pcc: list[float]
    """Mean Pearson r over genes, per fold."""
    gene_pcc: np.ndarray
    """Pearson r per gene, averaged over folds."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_pcc))

    @property
    def sd(self) -> float:
        return float(np.std(self.fold_pcc, ddof=1)) if len(self.fold_pcc) > 1 else 0.0


def probe_expression(features: np.ndarray, expression: np.ndarray, patients: Sequence[str], genes: Sequence[str],
                     *, n_genes: int = 50, n_components: int = 256, folds: int = 5, seed: int = 0) -> ProbeReport:
    """Held-out Pearson r of a linear probe from ``features`` to the most variable genes.

    Parameters
    ----------
    features
        ``[samples, dims]`` image features (tiles or slides).
    expression
        ``[samples, genes]`` log expression of the same samples.
    patients
        Each sample's patient; folds never split a patient.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler


    chosen = most_variable(expression, n_genes)
    y = expression[:, chosen]
    fold_pcc, per_gene = [], []
    for train, test in patient_folds(np.asarray(patients), folds, seed):
        scaler = StandardScaler().fit(features[train])
        pca = PCA(min(n_components, features.shape[1], len(train)), random_state=seed)
        x_train = pca.fit_transform(scaler.transform(features[train]))
        x_test = pca.transform(scaler.transform(features[test]))
        ridge = Ridge(alpha=100 / (x_train.shape[1] * y.shape[1]), solver="lsqr", fit_intercept=False,
                      max_iter=1000, random_state=seed)
        predicted = ridge.fit(x_train, y[train]).predict(x_test)
        r = pearson_per_column(predicted, y[test])
        per_gene.append(r)
        fold_pcc.append(float(np.nanmean(r)))
    return ProbeReport([genes[j] for j in chosen], fold_pcc, np.nanmean(per_gene, axis=0))

