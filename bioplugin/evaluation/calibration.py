"""Temperature scaling: scores a reader can take at their word.

A trained classifier's softmax is usually overconfident. One temperature ``T`` fitted on the
labeled val split (minimum negative log-likelihood) turns its scores into
``softmax(log p / T)``: the same ranking and top-1 labels, better calibrated probabilities.
Scores are all that is needed: ``log p`` differs from the logits by a per-image constant,
which the softmax ignores.

The gain is estimated honestly: the val images are split into folds, each fold is scored
with a temperature fitted on the others, and ECE (10 bins), NLL and Brier score are computed
on those held-out scores, never on the images a temperature was fitted on.
"""
import json
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from ..fileio import atomic_write

MIN_IMAGES = 20  # fewer labeled val images than this: no temperature (1) and a warning
ECE_BINS = 10


def log_scores(scores: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(scores, np.float64), 1e-12, 1.0))


def apply_temperature(scores: np.ndarray, temperature: Optional[float]) -> np.ndarray:
    """``softmax(log scores / temperature)`` row by row (NaN rows stay NaN)."""
    if not temperature or temperature == 1.0:
        return scores
    logits = log_scores(scores) / temperature
    logits -= np.nanmax(logits, axis=1, keepdims=True)
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.asarray(scores).dtype)


def fit_temperature(scores: np.ndarray, labels: Sequence[int]) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (LBFGS on
    ``log T``, so ``T`` stays positive)."""
    logits = torch.as_tensor(log_scores(scores))
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 100.0))


def reliability(scores: np.ndarray, labels: Sequence[int], bins: int = ECE_BINS) -> dict:
    """Per confidence bin: mean confidence, accuracy and image count (for the diagram)."""
    confidence = scores.max(1)
    correct = scores.argmax(1) == np.asarray(labels)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid='ignore'):
        mean_conf = np.bincount(index, confidence, bins) / count
        accuracy = np.bincount(index, correct, bins) / count
    return dict(edges=edges.tolist(), confidence=mean_conf.tolist(), accuracy=accuracy.tolist(),
                count=count.tolist())


def calibration_metrics(scores: np.ndarray, labels: Sequence[int],
                        bins: int = ECE_BINS) -> Dict[str, float]:
    """Expected calibration error (equal-width bins), NLL, Brier score, accuracy and mean
    confidence."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    table = reliability(scores, labels, bins)
    count = np.asarray(table['count'])
    gaps = np.abs(np.nan_to_num(np.asarray(table['confidence']))
                  - np.nan_to_num(np.asarray(table['accuracy'])))
    onehot = np.eye(scores.shape[1])[labels]
    return dict(ece=float((gaps * count).sum() / max(len(labels), 1)),
                nll=float(-log_scores(scores)[np.arange(len(labels)), labels].mean()),
                brier=float(((scores - onehot)**2).sum(1).mean()),
                accuracy=float((scores.argmax(1) == labels).mean()),
                mean_confidence=float(scores.max(1).mean()))


def cross_fitted_scores(scores: np.ndarray, labels: Sequence[int], folds: int = 2,
                        seed: int = 0) -> tuple:
    """Each image's scores under a temperature fitted on the other folds; returns
    ``(calibrated scores, temperatures per fold)``. Folds are drawn per class (stratified)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), int)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fold_of[rng.permutation(members)] = np.arange(len(members)) % folds
    calibrated, temperatures = np.empty_like(scores), []
    for fold in range(folds):
        held_out = fold_of == fold
        temperature = fit_temperature(scores[~held_out], labels[~held_out])
        temperatures.append(temperature)
        calibrated[held_out] = apply_temperature(scores[held_out], temperature)
    return calibrated, temperatures


def calibrate(scores: np.ndarray, labels: Sequence[int], num_classes: int,
              folds: int = 2, min_images: int = MIN_IMAGES) -> dict:
    """Fit the temperature on all of ``scores`` / ``labels`` and estimate its effect by
    cross-fitting. Returns ``temperature``, ``before`` / ``after`` metrics (``after``
    cross-fitted), ``reliability`` tables of both, ``images`` and ``warnings`` (a val split
    too small to fit on keeps temperature 1, said in a warning)."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)
    before = calibration_metrics(scores, labels) if len(labels) else {}
    result = dict(temperature=1.0, images=int(len(labels)), before=before, after=before,
                  fold_temperatures=[], warnings=[], reliability_before=reliability(
                      scores, labels) if len(labels) else {})
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if len(labels) < min_images:
        result['warnings'].append(
            f'only {len(labels)} labeled val images (fewer than {min_images}): too few to '
            'fit a temperature; scores are left as the model gives them (temperature 1)')
        result['reliability_after'] = result['reliability_before']
        return result
    if missing:
        result['warnings'].append(
            f'{len(missing)} class(es) have no val image (indices {missing[:10]}): the '
            'temperature is fitted on the others')
    after, temperatures = cross_fitted_scores(scores, labels, folds=folds)
    result.update(temperature=fit_temperature(scores, labels), fold_temperatures=temperatures,
                  after=calibration_metrics(after, labels),
                  reliability_after=reliability(after, labels))
    return result


def calibration_file(checkpoint: str) -> str:
    """Where a checkpoint's calibration is kept: ``<checkpoint>.calibration.json``."""
    return osp.splitext(checkpoint)[0] + '.calibration.json'


def save_calibration(checkpoint: str, calibration: dict) -> str:
    path = calibration_file(checkpoint)
    record = dict(calibration, checkpoint=osp.basename(checkpoint), fitted_on='val')
    atomic_write(path, json.dumps(record, indent=2))
    return path


def read_calibration(checkpoint: Optional[str]) -> Optional[dict]:
    """The calibration record stored beside ``checkpoint``, or None when it has none."""
    if not checkpoint or not osp.isfile(calibration_file(checkpoint)):
        return None
    with open(calibration_file(checkpoint)) as file:
        return json.load(file)

