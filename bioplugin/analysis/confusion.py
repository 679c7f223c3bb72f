"""Confusion matrix, per-class metrics and the most confused class pairs, as tables."""
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from mmpretrain.evaluation import ConfusionMatrix


def confusion_matrix(gt_labels: Sequence[str], pred_labels: Sequence[str],
                     classes: Sequence[str]) -> np.ndarray:
    """``(C, C)`` counts, rows = true class, columns = predicted class, in ``classes`` order."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(label) for label in list(gt_labels) + list(pred_labels)} - set(index))
    if unknown:
        raise ValueError(f'labels {unknown[:5]} are not among the {len(classes)} classes')
    gt = torch.tensor([index[str(label)] for label in gt_labels], dtype=torch.long)
    pred = torch.tensor([index[str(label)] for label in pred_labels], dtype=torch.long)
    return ConfusionMatrix.calculate(pred, gt, num_classes=len(classes)).numpy()


def confusion_frame(matrix: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """The matrix as a table: one row per true class, one column per predicted class."""
    frame = pd.DataFrame(matrix, index=list(classes), columns=list(classes))
    return frame.rename_axis('true \\ predicted').reset_index()


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the share of a true class given each prediction)."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)


def per_class_table(matrix: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Accuracy (= recall), precision, F1 and support per class, worst accuracy first."""
    diagonal = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    recall = np.divide(diagonal, support, out=np.zeros_like(diagonal), where=support > 0)
    precision = np.divide(diagonal, predicted, out=np.zeros_like(diagonal), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(diagonal),
                   where=denominator > 0)
    table = pd.DataFrame({'class': list(classes), 'accuracy': recall, 'precision': precision,
                          'recall': recall, 'f1': f1, 'support': support})
    return table.sort_values(['accuracy', 'support'], ascending=[True, False],
                             kind='stable').reset_index(drop=True)


def confused_pairs(matrix: np.ndarray, classes: Sequence[str], top_n: int = 10) -> pd.DataFrame:
    """The ``top_n`` off-diagonal cells: true → predicted, count and rate (count / true total),
    most frequent first (ties: higher rate first)."""
    rates = normalize_rows(matrix)
    true_index, pred_index = np.nonzero(matrix * (1 - np.eye(len(classes), dtype=matrix.dtype)))
    pairs = pd.DataFrame({
        'true': [classes[i] for i in true_index],
        'predicted': [classes[j] for j in pred_index],
        'count': matrix[true_index, pred_index],
        'rate': rates[true_index, pred_index],
    })
    return pairs.sort_values(['count', 'rate'], ascending=False,
                             kind='stable').head(top_n).reset_index(drop=True)


def most_confused_classes(matrix: np.ndarray, limit: int) -> np.ndarray:
    """Indices (in class order) of at most ``limit`` classes: the true and predicted classes
    of the largest confusions (:func:`confused_pairs` order), then, while there is room, the
    classes of lowest recall."""
    count = len(matrix)
    if count <= limit:
        return np.arange(count)
    pairs = confused_pairs(matrix, np.arange(count), top_n=matrix.size)
    chosen = dict.fromkeys(np.ravel(pairs[['true', 'predicted']].to_numpy()).tolist())
    recall = per_class_table(matrix, np.arange(count))['class']
    chosen.update(dict.fromkeys(recall.tolist()))
    return np.sort(list(chosen)[:limit])
