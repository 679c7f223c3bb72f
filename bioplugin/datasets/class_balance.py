"""Class frequencies of a labeled dataset, and the weights that even them out."""
import os.path as osp

import numpy as np
import pandas as pd
from mmengine.logging import print_log
from torch import nn

from ..errors import ConfigError, DatasetError
from .bio_dataset import BioDataset

REWEIGHT_MODES = {'uniform': 1.0, 'sqrt': 0.5}
CLASS_WEIGHT_MODES = {'inverse_frequency': 'uniform', 'sqrt_inverse_frequency': 'sqrt'}


def class_counts(dataset) -> np.ndarray:
    """Images per class of a labeled dataset, in class order."""
    return np.bincount(np.asarray(dataset.get_gt_labels(), dtype=np.int64),
                       minlength=len(dataset.metainfo['classes']))


def inverse_frequency_weights(counts: np.ndarray, mode: str = 'uniform') -> np.ndarray:
    """Per-class weights ∝ count^-p (p = 1 for ``'uniform'``, 0.5 for ``'sqrt'``), scaled so the
    weight of an average training image is 1 (``'uniform'`` gives scikit-learn's "balanced")."""
    if mode not in REWEIGHT_MODES:
        raise ValueError(f'mode must be one of {sorted(REWEIGHT_MODES)}, got {mode!r}')
    counts = np.asarray(counts, dtype=np.float64)
    power = REWEIGHT_MODES[mode]
    raw = np.where(counts > 0, np.maximum(counts, 1) ** -power, 0.0)
    return raw * counts.sum() / np.sum(raw * counts)


def resolve_class_weights(model: nn.Module, dataset) -> None:
    """Turn a loss's ``class_weight='inverse_frequency'`` (or ``'sqrt_inverse_frequency'``)
    into per-class weights from the training folders; ``BioRunner`` calls this when training
    starts::

        model = dict(head=dict(loss=dict(class_weight='inverse_frequency')))
    """
    losses = [module for module in model.modules()
              if isinstance(getattr(module, 'class_weight', None), str)]
    if not losses:
        return
    mode = losses[0].class_weight
    if mode not in CLASS_WEIGHT_MODES:
        raise ConfigError(f'loss.class_weight={mode!r}: use a list of weights or one of '
                          f'{", ".join(CLASS_WEIGHT_MODES)}.')
    weights = inverse_frequency_weights(class_counts(dataset), CLASS_WEIGHT_MODES[mode])
    for loss in losses:
        loss.class_weight = [round(float(w), 6) for w in weights]
    print_log(f'Loss class weights ({mode}): ' + ', '.join(f'{w:.3f}' for w in weights),
              logger='current')


def class_histogram(data_root: str, splits=('train', 'val')) -> pd.DataFrame:
    """Images per class of the labeled splits of an ImageNet-style folder (classes of
    ``train/``), one column per split that exists."""
    columns, classes = {}, None
    for split in splits:
        if not osp.isdir(osp.join(data_root, split)):
            continue
        dataset = BioDataset(data_root=data_root, data_prefix=split, classes=classes)
        classes = list(dataset.metainfo['classes'])
        columns[split] = class_counts(dataset)
    if not columns:
        raise DatasetError(f'{data_root!r} has none of the splits {", ".join(splits)}.')
    return pd.DataFrame(columns, index=pd.Index(classes, name='class'))


def format_histogram(table: pd.DataFrame, width: int = 40) -> str:
    """A text bar chart of the first column with all counts, and the imbalance ratio."""
    first = table.columns[0]
    largest = max(int(table[first].max()), 1)
    name_width = max(len(str(name)) for name in table.index)
    lines = [f'{"class":<{name_width}}  ' + '  '.join(f'{c:>6}' for c in table.columns)]
    for name, row in table.iterrows():
        bar = '#' * max(1, round(width * row[first] / largest)) if row[first] else ''
        lines.append(f'{name:<{name_width}}  ' + '  '.join(f'{int(v):>6}' for v in row)
                     + f'  {bar}')
    smallest = int(table[first][table[first] > 0].min())
    lines.append(f'{len(table)} classes, {int(table[first].sum())} {first} images; imbalance '
                 f'(largest / smallest class): {largest / smallest:.1f}')
    return '\n'.join(lines)
