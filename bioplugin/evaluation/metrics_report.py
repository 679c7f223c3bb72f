"""Classification metrics from predicted scores, with MMPretrain's own metric classes."""
import json
from typing import Sequence

import numpy as np
import torch

from mmpretrain.registry import METRICS

from ..fileio import atomic_write

DISPLAY_NAMES = {
    'accuracy/top1': 'top-1 accuracy (%)',
    'accuracy/top5': 'top-5 accuracy (%)',
    'single-label/precision': 'macro precision (%)',
    'single-label/recall': 'macro recall (%)',
    'single-label/f1-score': 'macro F1 (%)',
}


def evaluator_list(evaluator_cfgs) -> list:
    """An evaluator config as a list of metric configs (a config may give one dict or a list)."""
    if evaluator_cfgs is None:
        return []
    return list(evaluator_cfgs) if isinstance(evaluator_cfgs, (list, tuple)) else [evaluator_cfgs]


def fit_topk(evaluator_cfgs, num_classes: int) -> None:
    """Drop top-k accuracies with k above the class count (MMPretrain would crash), also
    inside a ``PredictionWriter``'s ``labeled_metrics``."""
    for evaluator in evaluator_list(evaluator_cfgs):
        if evaluator.get('type') == 'Accuracy':
            topk = evaluator.get('topk', (1, ))
            topk = (topk, ) if isinstance(topk, int) else tuple(topk)
            evaluator['topk'] = tuple(k for k in topk if k <= num_classes) or (1, )
        fit_topk(evaluator.get('labeled_metrics'), num_classes)


def compute_metrics(scores: np.ndarray, gt_labels: Sequence[int], evaluator_cfgs,
                    classes: Sequence[str]) -> dict:
    """The config's metrics (e.g. ``val_evaluator``) of ``(N, C)`` class scores, computed in
    this process alone (no gathering: the caller holds every score)."""
    evaluator_cfgs = [dict(cfg) for cfg in evaluator_list(evaluator_cfgs)]
    fit_topk(evaluator_cfgs, len(classes))
    samples = [dict(pred_score=torch.as_tensor(score),
                    pred_label=torch.as_tensor(score).argmax().reshape(1),
                    gt_label=torch.as_tensor([int(label)]))
               for score, label in zip(scores, gt_labels)]
    results = {}
    for cfg in evaluator_cfgs:
        metric = METRICS.build(cfg)
        metric.dataset_meta = dict(classes=tuple(classes))
        metric.process(None, samples)
        for key, value in metric.compute_metrics(metric.results).items():
            results[f'{metric.prefix}/{key}' if metric.prefix else key] = float(value)
    return results


def display_name(key: str) -> str:
    """``'top-1 accuracy (%)'`` for ``'accuracy/top1'``; ``'genus top-1 (%)'`` for
    ``'taxonomy/genus_top1'``."""
    if key.startswith('taxonomy/') and key.endswith('_top1'):
        return f"{key[len('taxonomy/'):-len('_top1')]} top-1 (%)"
    return DISPLAY_NAMES.get(key, key)


def format_metrics(metrics: dict, num_images: int) -> str:
    """A two-column text table of the metrics and the image count."""
    rows = [(display_name(key), f'{value:.2f}') for key, value in metrics.items()]
    rows.append(('images', str(num_images)))
    width = max(len(name) for name, _ in rows)
    return '\n'.join(f'{name:<{width}}  {value:>8}' for name, value in rows)


def save_metrics_json(path: str, metrics: dict, **context) -> str:
    """Write ``{"metrics": ..., **context}`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, json.dumps(dict(metrics=metrics, **context), indent=2))
