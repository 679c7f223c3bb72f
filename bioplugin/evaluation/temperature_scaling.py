"""Temperature scaling: scores a reader can take at their word.

A trained classifier's softmax is usually overconfident. One temperature ``T`` fitted on the
labeled val split (minimum negative log-likelihood of the logits divided by ``T``) turns its
logits into the calibrated scores ``softmax(logits / T)``: the same ranking and top-1 labels,
better calibrated probabilities. Everything here starts from logits, never from
probabilities: a float32 softmax underflows to 0 once two logits are ~100 nats apart (and a
probability clipped at 1e-12 loses the order of the classes beyond 27.6 nats), which would
bias both the fit and the scores.

The gain is estimated honestly: the val images are split into folds, each fold is scored
with a temperature fitted on the others, and ECE (10 bins), NLL and Brier score are computed
on those held-out scores, never on the images a temperature was fitted on.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch

MIN_IMAGES = 20  # fewer labeled val images than this: no temperature (1) and a warning
ECE_BINS = 10
TEMPERATURE_RANGE = (0.05, 100.0)  # the fit stays inside; calibration files must too


def calibrated_log_scores(logits: np.ndarray, temperature: Optional[float] = None) -> np.ndarray:
    """``log_softmax(logits / temperature)`` row by row, in float64 (NaN rows stay NaN)."""
    scaled = np.asarray(logits, np.float64) / float(temperature or 1.0)
    with np.errstate(invalid='ignore'):
        shifted = scaled - np.max(scaled, axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def calibrated_scores(logits: np.ndarray, temperature: Optional[float] = None) -> np.ndarray:
    """``softmax(logits / temperature)`` row by row, in float64 (NaN rows stay NaN); no
    temperature: the model's own scores."""
    return np.exp(calibrated_log_scores(logits, temperature))


def fit_temperature(logits: np.ndarray, labels: Sequence[int]) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` under
    ``softmax(logits / T)`` (LBFGS on ``log T``, in float64, so ``T`` stays positive)."""
    logits = torch.as_tensor(np.asarray(logits, np.float64))
    targets = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(*TEMPERATURE_RANGE))


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


def calibration_metrics(logits: np.ndarray, labels: Sequence[int],
                        temperature: Optional[float] = None,
                        bins: int = ECE_BINS) -> Dict[str, float]:
    """Expected calibration error (equal-width bins), NLL, Brier score, accuracy and mean
    confidence of ``softmax(logits / temperature)``."""
    labels = np.asarray(labels)
    log_scores = calibrated_log_scores(logits, temperature)
    scores = np.exp(log_scores)
    table = reliability(scores, labels, bins)
    count = np.asarray(table['count'])
    gaps = np.abs(np.nan_to_num(np.asarray(table['confidence']))
                  - np.nan_to_num(np.asarray(table['accuracy'])))
    onehot = np.eye(scores.shape[1])[labels]
    return dict(ece=float((gaps * count).sum() / max(len(labels), 1)),
                nll=float(-log_scores[np.arange(len(labels)), labels].mean()),
                brier=float(((scores - onehot)**2).sum(1).mean()),
                accuracy=float((scores.argmax(1) == labels).mean()),
                mean_confidence=float(scores.max(1).mean()))


def stratified_folds(labels: Sequence[int], folds: int, seed: int = 0) -> np.ndarray:
    """The fold of every image, drawn per class so that each fold holds each class."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), int)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        fold_of[rng.permutation(members)] = np.arange(len(members)) % folds
    return fold_of


def cross_fitted_log_scores(logits: np.ndarray, labels: Sequence[int], folds: int = 2,
                            seed: int = 0) -> tuple:
    """Each image's calibrated log-scores under a temperature fitted on the other folds;
    returns ``(log-scores, temperatures per fold)``. Log-scores are logits to every function
    here (``softmax(log softmax(z)) = softmax(z)``)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    fold_of = stratified_folds(labels, folds, seed)
    log_scores, temperatures = np.empty_like(logits), []
    for fold in range(folds):
        held_out = fold_of == fold
        temperature = fit_temperature(logits[~held_out], labels[~held_out])
        temperatures.append(temperature)
        log_scores[held_out] = calibrated_log_scores(logits[held_out], temperature)
    return log_scores, temperatures


def calibrate(logits: np.ndarray, labels: Sequence[int], num_classes: int,
              folds: int = 2, min_images: int = MIN_IMAGES) -> dict:
    """Fit the temperature on all of ``logits`` / ``labels`` and estimate its effect by
    cross-fitting. Returns ``temperature``, ``before`` / ``after`` metrics (``after``
    cross-fitted), ``reliability`` tables of both, ``images`` and ``warnings`` (a val split
    too small to fit on keeps temperature 1, said in a warning)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    before = calibration_metrics(logits, labels) if len(labels) else {}
    result = dict(temperature=1.0, images=int(len(labels)), before=before, after=before,
                  fold_temperatures=[], warnings=[], reliability_before=reliability(
                      calibrated_scores(logits), labels) if len(labels) else {})
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
    after, temperatures = cross_fitted_log_scores(logits, labels, folds=folds)
    result.update(temperature=fit_temperature(logits, labels), fold_temperatures=temperatures,
                  after=calibration_metrics(after, labels),
                  reliability_after=reliability(calibrated_scores(after), labels))
    return result
