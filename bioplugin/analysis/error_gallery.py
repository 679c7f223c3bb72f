"""The report's error gallery: the misclassified val images as the model saw them, with true
class, prediction and (calibrated) score, most confident mistakes first."""
from typing import Sequence

import numpy as np
import pandas as pd
from mmengine.dataset import default_collate

from ..apis.image_inputs import ImageListDataset
from .plots import plot_image_grid


def mistakes(predictions: pd.DataFrame, count: int = 16) -> pd.DataFrame:
    """Up to ``count`` wrong, readable predictions, highest score first."""
    wrong = predictions[(predictions.pred_label.astype(str) != predictions.gt_label.astype(str))
                        & predictions.score.notna()]
    return wrong.sort_values('score', ascending=False, kind='stable').head(count)


def model_view(image_paths: Sequence[str], pipeline_cfg) -> list:
    """RGB uint8 images after the test pipeline (resize and crop), as the model sees them."""
    samples = ImageListDataset(list(image_paths), pipeline_cfg)
    batch = default_collate([samples[i] for i in range(len(samples))])
    return [np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
            for image in batch['inputs']]


def error_gallery(predictions: pd.DataFrame, pipeline_cfg, count: int = 16):
    """A grid figure of :func:`mistakes`, or None when val has none."""
    chosen = mistakes(predictions, count)
    if chosen.empty:
        return None
    titles = [f'{true} → {predicted}\nscore {score:.2f}' for true, predicted, score in
              zip(chosen.gt_label, chosen.pred_label, chosen.score)]
    return plot_image_grid(model_view(chosen.image_path, pipeline_cfg), titles,
                           'Misclassified val images, most confident first '
                           '(true → predicted, score)')


def risk_coverage(top_scores: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Accepting the ``k`` highest-scoring images, for every ``k``: ``coverage`` (k / N),
    ``risk`` (share of them wrong) and the lowest ``score`` accepted."""
    order = np.argsort(-np.asarray(top_scores), kind='stable')
    wrong = 1 - np.asarray(correct, float)[order]
    accepted = np.arange(1, len(order) + 1)
    return pd.DataFrame(dict(coverage=accepted / max(len(order), 1),
                             risk=np.cumsum(wrong) / accepted,
                             score=np.asarray(top_scores)[order]))

