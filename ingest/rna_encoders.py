"""Frozen RNA encoders: log-normalised profiles in, embedding vectors out.

The default is PCA (scikit-learn) fitted once on the reference library and then
frozen as a versioned artifact. A torch RNA foundation model plugs in by
registering a class with the same three methods (:class:`RNAEncoder`).

Spec grammar (``--rna-encoder``): ``NAME[?key=value&...]``, e.g. ``pca`` or
``pca?n_components=32``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

import numpy as np

from hquery.errors import InputError

DEFAULT_RNA_ENCODER = "pca"


class RNAEncoder(Protocol):
    name: str
    dim: int

    def fit(self, profiles: np.ndarray) -> RNAEncoder: ...

    def encode(self, profiles: np.ndarray) -> np.ndarray: ...

    def save(self, directory: Path) -> None: ...

    @property
    def version(self) -> str: ...


class PCAEncoder:
    """PCA on log-normalised profiles; genes a profile does not measure are mean-imputed."""

    name = "pca"

    def __init__(self, n_components: int = 64, seed: int = 0):
        self.n_components = int(n_components)
        self.seed = int(seed)
        self.pipeline = None

    @property
    def dim(self) -> int:
        return int(self.pipeline[-1].n_components_)

    def fit(self, profiles: np.ndarray) -> PCAEncoder:
        from sklearn.decomposition import PCA
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline

        n, g = profiles.shape
        k = min(self.n_components, n - 1, g)
        if k < 2:
            raise InputError(f"PCA RNA encoder needs at least 3 expression profiles to fit; got {n}")
        self.pipeline = make_pipeline(
            SimpleImputer(strategy="mean", keep_empty_features=True),
            PCA(n_components=k, svd_solver="full", random_state=self.seed),
        )
        self.pipeline.fit(profiles)
        return self

    def encode(self, profiles: np.ndarray) -> np.ndarray:
        return self.pipeline.transform(profiles).astype(np.float32)

    @property
    def version(self) -> str:
        pca = self.pipeline[-1]
        h = hashlib.blake2b(pca.components_.astype(np.float32).tobytes(), digest_size=4)
        h.update(pca.mean_.astype(np.float32).tobytes())
        return f"pca{self.dim}_{h.hexdigest()}"

    @property
    def params(self) -> dict:
        pca = self.pipeline[-1]
        return {
            "n_components": self.dim,
            "seed": self.seed,
            "explained_variance_ratio": float(pca.explained_variance_ratio_.sum()),
            "n_fit": int(pca.n_samples_),
        }

    def save(self, directory: Path) -> None:
        import joblib

        joblib.dump(self.pipeline, Path(directory) / "encoder.joblib")

    @classmethod
    def load(cls, directory: Path) -> PCAEncoder:
        import joblib

        encoder = cls()
        encoder.pipeline = joblib.load(Path(directory) / "encoder.joblib")
        encoder.n_components = encoder.dim
        return encoder


RNA_ENCODERS: dict[str, type] = {"pca": PCAEncoder}


def register_rna_encoder(name: str, cls: type) -> None:
    """Make ``cls`` available as ``--rna-encoder name``."""
    RNA_ENCODERS[name] = cls


def create_rna_encoder(spec: str) -> RNAEncoder:
    name, _, query = spec.strip().partition("?")
    if name not in RNA_ENCODERS:
        raise InputError(f"unknown RNA encoder {name!r}; registered: {', '.join(RNA_ENCODERS)}")
    try:
        return RNA_ENCODERS[name](**{k: int(v) if v.isdigit() else v for k, v in parse_qsl(query)})
    except TypeError as exc:
        raise InputError(f"bad options for RNA encoder {spec!r}: {exc}") from exc


def load_rna_encoder(name: str, directory: Path) -> RNAEncoder:
    return RNA_ENCODERS[name].load(directory)
