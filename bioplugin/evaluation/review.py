"""The review queue: which predictions can be accepted without a look, at a target precision.

Thresholds are chosen on the labeled val split from calibrated scores: for the predicted
class when val holds enough images predicted as it (per class), else one global threshold.
A prediction whose top-1 score reaches its class's threshold is ``accept``, any other (and
every unreadable or unknown image) ``review``.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

TARGET_PRECISION = 0.95
MIN_CLASS_IMAGES = 20  # val images predicted as a class before it gets its own threshold
NEVER = float('inf')  # no threshold reaches the target: everything is reviewed


def precision_threshold(top_scores: np.ndarray, correct: np.ndarray,
                        target: float) -> float:
    """The lowest score ``t`` such that the images scoring at least ``t`` are right at least
    ``target`` of the time (the most images accepted at that precision); ``inf`` if none."""
    order = np.argsort(-top_scores, kind='stable')
    scores, hits = top_scores[order], correct[order].astype(float)
    accepted = np.arange(1, len(scores) + 1)
    precision = np.cumsum(hits) / accepted
    # a cut must not split images of one score: only the last of a run of equal scores counts
    last_of_run = np.append(scores[1:] != scores[:-1], True)
    good = np.flatnonzero((precision >= target) & last_of_run)
    return float(scores[good[-1]]) if len(good) else NEVER


def choose_thresholds(scores: np.ndarray, labels: Sequence[int], classes: Sequence[str],
                      target: float = TARGET_PRECISION,
                      min_class_images: int = MIN_CLASS_IMAGES) -> dict:
    """Per class: ``threshold``, ``source`` (``'class'`` or ``'global'``) and ``val_images``
    (predicted as the class); the ``global`` threshold; the val ``coverage`` (share accepted)
    and ``precision`` of the accepted ones; ``warnings``."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    predicted, top = scores.argmax(1), scores.max(1)
    correct = predicted == labels
    global_threshold = precision_threshold(top, correct, target)
    per_class, warnings = {}, []
    for index, name in enumerate(classes):
        mine = predicted == index
        if mine.sum() >= min_class_images:
            threshold, source = precision_threshold(top[mine], correct[mine], target), 'class'
        else:
            threshold, source = global_threshold, 'global'
        per_class[str(name)] = dict(threshold=threshold, source=source,
                                    val_images=int(mine.sum()))
    if global_threshold == NEVER:
        warnings.append(f'no score threshold reaches {target:.0%} precision on val: every '
                        'prediction is sent to review')
    accepted = top >= np.array([per_class[str(classes[i])]['threshold'] for i in predicted])
    return dict(target_precision=target, min_class_images=min_class_images,
                global_threshold=global_threshold, classes=per_class,
                coverage=float(accepted.mean()) if len(top) else 0.0,
                precision=float(correct[accepted].mean()) if accepted.any() else None,
                val_images=int(len(top)), warnings=warnings)


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
