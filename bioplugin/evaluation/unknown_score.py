""""Not one of my classes": an unknown score from a prediction's logits and head feature.

Two signals, both higher for stranger images:

- **energy** of the logits, ``-logsumexp(logits)`` (Liu et al., 2020);
- **kNN distance**: between the L2-normalised 512-d feature of the head (``pre_logits``)
  and that of the ``k``-th nearest training image (Sun et al., 2022).

Each is standardised by its mean and spread over the labeled val split, and the unknown
score is the larger of the two. The threshold is the ``known_rate`` quantile (default 95 %)
of the val images' scores, so that share of known images passes; a score above it is
``unknown``. The training images' features are computed once per checkpoint (the train
split through the test pipeline) and kept beside it as ``<checkpoint>.features.npz``; the
statistics and threshold go into ``<checkpoint>.calibration.json`` (``open_set``); both are
read by :mod:`~bioplugin.evaluation.model_facts`.

The score is only as good as the features: a model fine-tuned from ImageNet weights
separates unseen taxa far better than one trained from scratch on a few hundred images.
"""
from typing import Dict

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .temperature_scaling import MIN_IMAGES

KNOWN_RATE = 0.95  # share of known val images that pass as known
NEIGHBOURS = 5  # k of the kNN distance (fewer when the bank is smaller)
SIGNALS = ('energy', 'distance')


class UnknownScore(nn.Module):
    """``(logits (N, C), features (N, D)) → unknown score (N,)``; the same module runs in
    the post-processor and inside an exported ONNX graph (``unknown_score`` output)."""

    def __init__(self, bank: torch.Tensor, k: int, mean: Dict[str, float],
                 std: Dict[str, float]):
        super().__init__()
        self.register_buffer('bank', F.normalize(torch.as_tensor(bank).float(), dim=1))
        self.k = max(1, min(int(k), len(self.bank)))
        self.register_buffer('mean', torch.tensor([mean[s] for s in SIGNALS]))
        self.register_buffer('std', torch.tensor([max(std[s], 1e-6) for s in SIGNALS]))

    def signals(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``(N, 2)``: energy and kNN distance, unstandardised."""
        energy = -torch.logsumexp(logits.float(), dim=1)
        similarity = F.normalize(features.float(), dim=1) @ self.bank.T
        kth = similarity.topk(self.k, dim=1).values[:, -1]
        distance = (2 - 2 * kth).clamp_min(0).sqrt()
        return torch.stack([energy, distance], dim=1)

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return ((self.signals(logits, features) - self.mean) / self.std).amax(dim=1)


def signals_of(bank: np.ndarray, logits: np.ndarray, features: np.ndarray,
               k: int = NEIGHBOURS) -> np.ndarray:
    """Energy and kNN distance of each image (``(N, 2)``), without standardisation."""
    neutral = UnknownScore(torch.as_tensor(bank), k, dict.fromkeys(SIGNALS, 0.0),
                           dict.fromkeys(SIGNALS, 1.0))
    return _chunked(neutral.signals, logits, features)


@torch.no_grad()
def _chunked(function, logits: np.ndarray, features: np.ndarray, rows: int = 1024):
    parts = [function(torch.as_tensor(logits[i:i + rows]), torch.as_tensor(features[i:i + rows]))
             for i in range(0, len(logits), rows)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, ))


def fit_unknown_score(val_logits: np.ndarray, val_features: np.ndarray, bank: np.ndarray,
                 k: int = NEIGHBOURS, known_rate: float = KNOWN_RATE,
                 min_images: int = MIN_IMAGES) -> dict:
    """The ``open_set`` record of a checkpoint: ``k``, ``known_rate``, the val ``mean`` /
    ``std`` of each signal, the ``threshold`` (None when val holds fewer than
    ``min_images`` images, said in ``warnings``), ``val_images`` and ``bank_images``."""
    record = dict(k=int(min(k, len(bank))), known_rate=known_rate, threshold=None,
                  val_images=int(len(val_logits)), bank_images=int(len(bank)), warnings=[])
    if len(val_logits) < min_images or not len(bank):
        record['warnings'].append(
            f'only {len(val_logits)} labeled val images (fewer than {min_images}) and '
            f'{len(bank)} training images: too few to choose an unknown threshold; no '
            '`unknown` column is written')
        return record
    signals = signals_of(bank, val_logits, val_features, k)
    record.update(mean=dict(zip(SIGNALS, signals.mean(0).tolist())),
                  std=dict(zip(SIGNALS, signals.std(0).tolist())))
    detector = UnknownScore(torch.as_tensor(bank), k, record['mean'], record['std'])
    scores = _chunked(detector, val_logits, val_features)
    record['threshold'] = float(np.quantile(scores, known_rate, method='higher'))
    record['val_known_rate'] = float((scores <= record['threshold']).mean())
    return record


class UnknownDetector:
    """A checkpoint's :class:`UnknownScore` and threshold (its calibration record's
    ``open_set`` entry and its training features); ``detector(logits, features)`` gives the
    scores of numpy arrays. Built by :mod:`~bioplugin.evaluation.model_facts`, which reads the
    files."""

    def __init__(self, record: dict, bank: np.ndarray):
        self.record = record
        self.threshold = float(record['threshold'])
        self.module = UnknownScore(torch.as_tensor(bank), record['k'], record['mean'],
                                   record['std']).eval()

    def __call__(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        return _chunked(self.module, logits, features)

    def signals(self, logits: np.ndarray, features: np.ndarray) -> np.ndarray:
        """``(N, 2)``: each image's energy and kNN distance, unstandardised."""
        return _chunked(self.module.signals, logits, features)


def open_set_auroc(known: np.ndarray, unknown: np.ndarray) -> dict:
    """AUROC of telling ``unknown`` scores from ``known`` ones (higher = unknown) and the
    false-positive rate at 95 % true-positive rate: the share of unknown images that pass as
    known when 95 % of known images do."""
    known, unknown = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    values = np.concatenate([known, unknown])
    ranks = pd.Series(values).rank().to_numpy()  # average ranks for ties
    auroc = (ranks[len(known):].sum() - len(unknown) * (len(unknown) + 1) / 2) / (
        len(known) * len(unknown))
    cut = np.quantile(known, KNOWN_RATE, method='higher')  # as the threshold is chosen
    return dict(auroc=float(auroc), fpr_at_95_tpr=float((unknown <= cut).mean()),
                known_images=int(len(known)), unknown_images=int(len(unknown)))
