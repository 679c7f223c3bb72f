"""The report's error gallery: the misclassified val images as the model saw them, with true
class, prediction and (calibrated) score, most confident mistakes first."""
import numpy as np
import pandas as pd

from .gradcam import pipeline_batch, rgb_images
from .plots import plot_image_grid


def mistakes(predictions: pd.DataFrame, count: int = 16) -> pd.DataFrame:
    """Up to ``count`` wrong, readable predictions, highest score first."""
    wrong = predictions[(predictions.pred_label.astype(str) != predictions.gt_label.astype(str))
                        & predictions.score.notna()]
    return wrong.sort_values('score', ascending=False, kind='stable').head(count)


def error_gallery(predictions: pd.DataFrame, pipeline_cfg, count: int = 16):
    """A grid figure of :func:`mistakes`, or None when val has none."""
    chosen = mistakes(predictions, count)
    if chosen.empty:
        return None
    titles = [f'{true} → {predicted}\nscore {score:.2f}' for true, predicted, score in
              zip(chosen.gt_label, chosen.pred_label, chosen.score)]
    images = rgb_images(pipeline_batch(chosen.image_path, pipeline_cfg))
    return plot_image_grid(images, titles,
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

