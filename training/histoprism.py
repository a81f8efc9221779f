"""HistoPrism: a slide's tile embeddings, conditioned on its cancer type, regressed onto gene expression.

After the seed paper (HistoPrism, pan-cancer expression from histology): tile
embeddings from a frozen (or PEKA-adapted) encoder are the queries of a
cross-attention block whose keys and values are the cancer type's embedding;
a transformer encoder then mixes the tiles of the slide, and an MLP head
predicts log1p expression of a gene panel. No positional encoding by default
(the paper's ablation found none was needed); ``positional=True`` adds a 2-D
sinusoidal encoding of the tile's grid position.

The cancer type is ``type_tokens`` learned key/value tokens (the paper uses one;
with one token every tile receives the same message, with several each tile
weighs them by its content). Row 0 of the type table is "unknown": training
shows it in place of the true type with probability ``type_dropout``, so a slide
without a known type still gets a sensible prediction.

The same head reads each tile (tile-level prediction, trained on spot profiles
where the store has them) and the masked mean of the slide's tiles
(slide-level prediction, trained on the bulk profile). Targets are standardised
per gene, separately for bulk and spots, so MSE weighs every gene alike.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
import torch.nn as nn

from hquery.store import Store
from hquery.training.bags import SlideBags
from hquery.training.registry import load_model
from hquery.training.splits import patient_holdout

UNKNOWN = 0


@dataclasses.dataclass(frozen=True)
class HistoPrismConfig:
    """Architecture and training settings."""

    dim: int = 128
    heads: int = 4
    layers: int = 2
    type_tokens: int = 4
    conditioning: bool = True
    """Cross-attention on the cancer type; ``False`` is the ablation."""
    positional: bool = False
    dropout: float = 0.1
    type_dropout: float = 0.1
    max_tiles: int = 256
    """Tiles drawn per slide per training step (a bulk target is the mean of all of them)."""
    spot_weight: float = 1.0
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 32
    max_epochs: int = 60
    patience: int = 8
    val_fraction: float = 0.1
    seed: int = 0


def sinusoidal_2d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``[..., 2]`` grid positions -> ``[..., dim]``: half the channels encode x, half y (Vaswani et al.)."""
    quarter = dim // 4
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(quarter, dtype=torch.float32) / max(quarter, 1))
    parts = []
    for axis in range(2):
        angle = positions[..., axis : axis + 1].float() * frequencies
        parts += [torch.sin(angle), torch.cos(angle)]
    encoding = torch.cat(parts, dim=-1)
    return nn.functional.pad(encoding, (0, dim - encoding.shape[-1]))


class CancerTypeConditioning(nn.Module):
    """Tiles (queries) attend to their slide's cancer-type tokens (keys and values); residual."""

    def __init__(self, n_types: int, dim: int, heads: int, tokens: int, dropout: float):
        super().__init__()
        self.tokens = tokens
        self.types = nn.Embedding(n_types + 1, dim * tokens)
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        context = self.types(types).view(len(types), self.tokens, -1)
        message, _ = self.attention(self.norm(x), context, context, need_weights=False)
        return x + message


class HistoPrism(nn.Module):
    """``forward(tiles, mask, types, positions) -> (tile predictions, slide predictions)``, standardised units."""

    def __init__(self, in_dim: int, n_genes: int, n_types: int, config: HistoPrismConfig = HistoPrismConfig()):
        super().__init__()
        self.config = config
        self.in_dim, self.n_genes, self.n_types = in_dim, n_genes, n_types
        dim = config.dim
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_sd", torch.ones(in_dim))
        self.embed = nn.Linear(in_dim, dim)
        self.conditioning = (CancerTypeConditioning(n_types, dim, config.heads, config.type_tokens, config.dropout)
                             if config.conditioning else None)
        layer = nn.TransformerEncoderLayer(dim, config.heads, 2 * dim, config.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Dropout(config.dropout),
                                  nn.Linear(2 * dim, n_genes))

    def forward(self, tiles: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``tiles [B, T, in_dim]``, ``mask [B, T]`` (True where a tile is), ``types [B]`` (0: unknown)."""
        x = self.embed((tiles - self.feature_mean) / self.feature_sd)
        if self.config.positional:
            if positions is None:
                raise ValueError("this HistoPrism encodes tile positions; pass them")
            x = x + sinusoidal_2d(positions, self.config.dim)
        if self.conditioning is not None:
            x = self.conditioning(x, types)
        x = self.norm(self.encoder(x, src_key_padding_mask=~mask))
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(x), self.head(pooled)


@dataclasses.dataclass
class FittedHistoPrism:
    """A trained model with what it needs to read a new slide: its type vocabulary and target scales."""

    model: HistoPrism
    cancer_types: list[str]
    """Index ``i + 1`` of the type table; anything else is unknown."""
    genes: list[str]
    scales: dict[str, np.ndarray]
    """``bulk_mean``, ``bulk_sd``, ``spot_mean``, ``spot_sd`` per gene."""
    history: dict

    def type_ids(self, cancer_types: list[str | None]) -> np.ndarray:
        known = {t: i + 1 for i, t in enumerate(self.cancer_types)}
        return np.array([known.get(t, UNKNOWN) for t in cancer_types], dtype=np.int64)

    def predict(self, bags: SlideBags, *, unknown_type: bool = False, tiles: bool = True,
                batch_tiles: int = 16384) -> tuple[np.ndarray, np.ndarray | None]:
        """log1p expression ``[slides, genes]`` and (if ``tiles``) ``[tiles, genes]`` in ``bags``' row order.

        Every tile of a slide is read at once; slides are batched up to ``batch_tiles`` padded tiles.
        ``unknown_type`` predicts as if no slide's cancer type were known.
        """
        types = np.zeros(len(bags), np.int64) if unknown_type else self.type_ids(bags.cancer_types)
        slide_out = np.empty((len(bags), len(self.genes)), np.float32)
        tile_out = np.empty((len(bags.tiles), len(self.genes)), np.float32) if tiles else None
        self.model.eval()
        order = np.argsort(bags.n_tiles, kind="stable")
        start = 0
        with torch.no_grad():
            while start < len(order):
                stop = start + 1
                while stop < len(order) and (stop - start + 1) * bags.n_tiles[order[stop]] <= batch_tiles:
                    stop += 1
                batch = order[start:stop]
                x, mask, pos, _ = _pad(bags, batch, [np.arange(n) for n in bags.n_tiles[batch]])
                tile_z, slide_z = self.model(x, mask, torch.as_tensor(types[batch]), pos)
                slide_out[batch] = slide_z.numpy() * self.scales["bulk_sd"] + self.scales["bulk_mean"]
                if tiles:
                    valid = mask.numpy()
                    tile_out[bags.tile_rows(batch)] = (tile_z.numpy()[valid] * self.scales["spot_sd"]
                                                       + self.scales["spot_mean"])
                start = stop
        return slide_out, tile_out


def fit_histoprism(bags: SlideBags, config: HistoPrismConfig = HistoPrismConfig(), *,
                   cancer_types: list[str] | None = None, device: str = "cpu") -> FittedHistoPrism:
    """Train on ``bags`` (loaded with targets), early stopping on a patient-level validation split.

    On CPU the fit runs on one thread, as :func:`~hquery.training.fit.fit_alignment`
    does, so its result does not depend on the machine; folds run side by side instead.

    Parameters
    ----------
    cancer_types
        The type vocabulary (default: the types in ``bags``); others read as unknown.
    """
    from hquery.training.fit import torch_threads

    if bags.bulk is None:
        raise ValueError("fit_histoprism needs bags loaded with targets (load_slide_bags(..., genes=...))")
    with torch_threads(1 if device == "cpu" else torch.get_num_threads()):
        return _fit(bags, config, cancer_types, device)


def _fit(bags: SlideBags, config: HistoPrismConfig, cancer_types: list[str] | None, device: str) -> FittedHistoPrism:

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    vocabulary = cancer_types or sorted({t for t in bags.cancer_types if t})
    train_idx, val_idx = patient_holdout(bags.patients, config.val_fraction, config.seed)
    scales = _scales(bags, train_idx)
    bulk_z = torch.as_tensor((bags.bulk - scales["bulk_mean"]) / scales["bulk_sd"], dtype=torch.float32)
    spot_z = (None if bags.spots is None else
              torch.as_tensor((bags.spots - scales["spot_mean"]) / scales["spot_sd"], dtype=torch.float32))
    model = HistoPrism(bags.tiles.shape[1], len(bags.genes), len(vocabulary), config)
    train_tiles = bags.tiles[bags.tile_rows(train_idx)]
    model.feature_mean.copy_(torch.as_tensor(train_tiles.mean(0)))
    model.feature_sd.copy_(torch.as_tensor(train_tiles.std(0).clip(1e-6)))
    model.to(device)
    fitted = FittedHistoPrism(model, vocabulary, bags.genes, scales, {})
    types = fitted.type_ids(bags.cancer_types)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best_state, best_loss, best_epoch, curve = copy.deepcopy(model.state_dict()), float("inf"), 0, []
    for epoch in range(config.max_epochs):
        model.train()
        shuffled = rng.permutation(train_idx)
        for start in range(0, len(shuffled), config.batch_size):
            batch = shuffled[start : start + config.batch_size]
            shown = np.where(rng.random(len(batch)) < config.type_dropout, UNKNOWN, types[batch])
            drawn = [_draw(n, config.max_tiles, rng) for n in bags.n_tiles[batch]]
            loss = _loss(model, bags, batch, drawn, shown, bulk_z, spot_z, config, device)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        val_loss = _validation_loss(model, bags, val_idx, types, bulk_z, spot_z, config, device)
        curve.append(val_loss)
        if val_loss < best_loss - 1e-4:
            best_state, best_loss, best_epoch = copy.deepcopy(model.state_dict()), val_loss, epoch
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.cpu().eval()
    fitted.history = {"epochs": len(curve), "best_epoch": best_epoch, "best_val_loss": best_loss}
    return fitted


def _scales(bags: SlideBags, train_idx: np.ndarray) -> dict[str, np.ndarray]:
    bulk = bags.bulk[train_idx]
    out = {"bulk_mean": bulk.mean(0), "bulk_sd": bulk.std(0)}
    rows = bags.spot_row[bags.tile_rows(train_idx)] if bags.spots is not None else np.zeros(0, int)
    rows = rows[rows >= 0]
    spots = bags.spots[rows] if len(rows) > 1 else None
    out["spot_mean"], out["spot_sd"] = (spots.mean(0), spots.std(0)) if spots is not None else (out["bulk_mean"],
                                                                                                 out["bulk_sd"])
    return {k: np.where(v > 1e-6, v, 1.0).astype(np.float32) if k.endswith("sd") else v.astype(np.float32)
            for k, v in out.items()}


def _draw(n: int, most: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, most, replace=False)) if n > most else np.arange(n)


def _pad(bags: SlideBags, batch: np.ndarray, drawn: list[np.ndarray]):
    """Padded ``tiles [B, T, d]``, ``mask [B, T]``, ``positions [B, T, 2]`` and the tile rows ``[B, T]`` (-1: pad)."""
    longest = max(len(d) for d in drawn)
    rows = np.full((len(batch), longest), -1, dtype=np.int64)
    for b, (i, d) in enumerate(zip(batch, drawn)):
        rows[b, : len(d)] = bags.offsets[i] + d
    mask = rows >= 0
    safe = np.where(mask, rows, 0)
    x = torch.as_tensor(bags.tiles[safe] * mask[..., None], dtype=torch.float32)
    positions = torch.as_tensor(bags.positions[safe] * mask[..., None], dtype=torch.float32)
    return x, torch.as_tensor(mask), positions, rows


def _loss(model, bags, batch, drawn, shown, bulk_z, spot_z, config, device) -> torch.Tensor:
    x, mask, positions, rows = _pad(bags, batch, drawn)
    tile_z, slide_z = model(x.to(device), mask.to(device), torch.as_tensor(shown).to(device), positions.to(device))
    loss = nn.functional.mse_loss(slide_z, bulk_z[batch].to(device))
    if spot_z is not None:
        spot = np.where(rows >= 0, bags.spot_row[np.where(rows >= 0, rows, 0)], -1)
        has = spot >= 0
        if has.any():
            loss = loss + config.spot_weight * nn.functional.mse_loss(
                tile_z[torch.as_tensor(has).to(device)], spot_z[spot[has]].to(device))
    return loss


def _validation_loss(model, bags, val_idx, types, bulk_z, spot_z, config, device) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(val_idx), config.batch_size):
            batch = val_idx[start : start + config.batch_size]
            drawn = [np.arange(n) for n in bags.n_tiles[batch]]
            total += _loss(model, bags, batch, drawn, types[batch], bulk_z, spot_z, config, device).item() * len(batch)
            count += len(batch)
    return total / max(count, 1)


def load_histoprism(store: Store, version: str | None = None) -> tuple[FittedHistoPrism, dict]:
    """The store's current HistoPrism (or ``version``) and its ``params`` (with its ``version``)."""
    fitted, record = load_model(store, "histoprism", version)
    return fitted, {"version": record.version, **record.params}
