"""The review queue: which predictions can be accepted without a look, at a target precision.

Thresholds are chosen on the labeled val split from calibrated scores: for the predicted
class when val holds enough images predicted as it (per class), else one global threshold.
A prediction whose top-1 score reaches its class's threshold is ``accept``, any other (and
every unreadable or unknown image) ``review``.

A threshold that merely reaches the target on val is optimistic on new images: with a few
dozen val images, the precision it shows is luck as much as skill. So each threshold is
chosen for the target to hold with a stated ``confidence`` (90 %): candidate thresholds (the
val scores) are tested from the highest down, each by the one-sided Clopper–Pearson lower
bound of its accepted images' precision, and the sequence stops at the first that falls
below the target (fixed-sequence testing, as in Learn-then-Test, Angelopoulos et al. 2021);
the last one that held is the threshold. It can hold only where enough images back it:
``n`` accepted images, all right, bound the precision at ``(1 - confidence) ** (1 / n)``, so
95 % at 90 % confidence needs 45 of them. ``confidence=None`` gives the point estimate
(the lowest threshold whose val precision reaches the target), as calibration files of
earlier versions hold.
"""
import math
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta

TARGET_PRECISION = 0.95
CONFIDENCE = 0.9  # that the target holds on new images
MIN_CLASS_IMAGES = 20  # val images predicted as a class before it gets its own threshold
NEVER = float('inf')  # no threshold reaches the target: everything is reviewed


def precision_lower_bound(hits, accepted, confidence: float):
    """The one-sided Clopper–Pearson lower bound, at ``confidence``, of a rate seen as
    ``hits`` of ``accepted`` (0 without hits or images); arrays or numbers."""
    hits, accepted = np.asarray(hits, float), np.asarray(accepted, float)
    with np.errstate(invalid='ignore'):
        bound = beta.ppf(1 - confidence, hits, accepted - hits + 1)
    return np.where((hits > 0) & (accepted > 0), np.nan_to_num(bound), 0.0)


def images_needed(target: float, confidence: Optional[float]) -> int:
    """The fewest accepted images, all right, whose lower bound reaches ``target``."""
    if confidence is None:
        return 1
    if target >= 1:
        return math.inf
    return math.ceil(math.log(1 - confidence) / math.log(target) - 1e-12)


def _candidates(top_scores: np.ndarray, correct: np.ndarray) -> tuple:
    """The cuts at val scores, highest first: ``(score, accepted, hits)`` arrays; a cut
    never splits images of one score."""
    order = np.argsort(-top_scores, kind='stable')
    scores, hits = top_scores[order], np.cumsum(correct[order].astype(float))
    last_of_run = np.append(scores[1:] != scores[:-1], True)
    accepted = np.arange(1, len(scores) + 1)
    return scores[last_of_run], accepted[last_of_run], hits[last_of_run]


def precision_threshold(top_scores: np.ndarray, correct: np.ndarray, target: float,
                        confidence: Optional[float] = CONFIDENCE) -> float:
    """The threshold of the images scoring at least it: with ``confidence``, the last of
    the fixed sequence of val scores (highest first, from the first with enough images to
    hold) whose Clopper–Pearson lower bound reaches ``target``; with ``None`` the lowest
    score whose val precision reaches it. ``inf`` if none."""
    scores, accepted, hits = _candidates(np.asarray(top_scores), np.asarray(correct))
    if confidence is None:
        good = np.flatnonzero(hits / accepted >= target)
        return float(scores[good[-1]]) if len(good) else NEVER
    start = np.searchsorted(accepted, images_needed(target, confidence))
    held = precision_lower_bound(hits[start:], accepted[start:], confidence) >= target
    passed = len(held) if held.all() else int(np.argmin(held))
    return float(scores[start + passed - 1]) if passed else NEVER


def best_guarantee(top_scores: np.ndarray, correct: np.ndarray,
                   confidence: Optional[float]) -> Optional[float]:
    """The highest precision any threshold guarantees at ``confidence`` on these val images
    (None without a confidence or images)."""
    if confidence is None or not len(top_scores):
        return None
    _, accepted, hits = _candidates(np.asarray(top_scores), np.asarray(correct))
    return float(precision_lower_bound(hits, accepted, confidence).max())


def choose_thresholds(scores: np.ndarray, labels: Sequence[int], classes: Sequence[str],
                      target: float = TARGET_PRECISION,
                      min_class_images: int = MIN_CLASS_IMAGES,
                      confidence: Optional[float] = CONFIDENCE) -> dict:
    """Per class: ``threshold``, ``source`` (``'class'`` or ``'global'``), ``val_images``
    (predicted as the class) and the ``guaranteed_precision`` of its threshold; the
    ``global`` threshold; ``confidence`` (None: point estimates); on val, the ``coverage``
    (share accepted) and ``precision`` of the accepted ones (point estimates) beside their
    lower bounds at ``confidence`` (``coverage_low``, ``guaranteed_precision``); the best
    precision val can guarantee (``best_guarantee``); ``warnings``. A class gets its own
    threshold when val holds ``min_class_images`` predicted as it and at least the images a
    guarantee needs."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    predicted, top = scores.argmax(1), scores.max(1)
    correct = predicted == labels
    needed = images_needed(target, confidence)
    global_threshold = precision_threshold(top, correct, target, confidence)
    per_class, warnings = {}, []
    for index, name in enumerate(classes):
        mine = predicted == index
        if mine.sum() >= max(min_class_images, needed):
            threshold = precision_threshold(top[mine], correct[mine], target, confidence)
            pool, source = mine, 'class'
        else:
            threshold, pool, source = global_threshold, np.ones_like(mine), 'global'
        kept = pool & (top >= threshold)
        per_class[str(name)] = dict(
            threshold=threshold, source=source, val_images=int(mine.sum()),
            guaranteed_precision=_bound(correct[kept].sum(), kept.sum(), confidence))
    best = best_guarantee(top, correct, confidence)
    if global_threshold == NEVER:
        if confidence is not None and best is not None:
            warnings.append(
                f'val is too small to guarantee {target:.0%} precision at {confidence:.0%} '
                f'confidence ({needed} accepted val images, all right, would be needed): the '
                f'best it can guarantee is {best:.1%}, so every prediction is sent to '
                'review; label more val images or lower --target-precision')
        else:
            warnings.append(f'no score threshold reaches {target:.0%} precision on val: every '
                            'prediction is sent to review')
    accepted = top >= np.array([per_class[str(classes[i])]['threshold'] for i in predicted])
    return dict(target_precision=target, confidence=confidence,
                min_class_images=min_class_images, global_threshold=global_threshold,
                classes=per_class,
                coverage=float(accepted.mean()) if len(top) else 0.0,
                coverage_low=_bound(accepted.sum(), len(top), confidence),
                precision=float(correct[accepted].mean()) if accepted.any() else None,
                guaranteed_precision=_bound(correct[accepted].sum(), accepted.sum(),
                                            confidence),
                best_guarantee=best, val_images=int(len(top)), warnings=warnings)


def _bound(hits, accepted, confidence: Optional[float]) -> Optional[float]:
    if confidence is None:
        return None
    return float(precision_lower_bound(hits, accepted, confidence))


def decisions(frame: pd.DataFrame, review: Optional[dict]) -> Optional[pd.Series]:
    """``accept`` / ``review`` per row of a prediction table (``pred_label``, ``score``,
    optional ``status`` and ``unknown``: an unknown image is reviewed whatever its score), or
    None without thresholds."""
    if not review:
        return None
    thresholds: Dict[str, float] = {name: entry['threshold']
                                    for name, entry in review['classes'].items()}
    fallback = review['global_threshold']
    limit = frame['pred_label'].map(lambda label: thresholds.get(str(label), fallback))
    ok = frame['status'].eq('ok') if 'status' in frame else True
    accept = ok & frame['score'].notna() & (frame['score'] >= limit.astype(float))
    if 'unknown' in frame:
        accept &= ~frame['unknown'].astype(bool)
    return accept.map({True: 'accept', False: 'review'})


def review_queue(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows to check by hand, least certain first."""
    return frame[frame['decision'] == 'review'].sort_values('score', na_position='first',
                                                             kind='stable')
