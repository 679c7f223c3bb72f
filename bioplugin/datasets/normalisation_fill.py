"""The normalisation is declared once, in the data preprocessor; fill values follow it.

A pipeline transform's ``fill_color='mean'`` is the data preprocessor's mean in the channel
order of the loaded image (BGR when the preprocessor converts to RGB), i.e. 0 after
normalisation. ``BioRunner`` and :func:`bioplugin.apis.load_config` resolve it (so a dataset
built from a loaded config fills alike), and a backbone with other statistics changes only
the preprocessor::

    data_preprocessor = dict(mean=[127.5] * 3, std=[127.5] * 3, to_rgb=True)
    train_pipeline = [..., dict(type='RandomErasing', mode='const', fill_color='mean'), ...]
"""
from typing import Any, List, Optional

from ..errors import ConfigError
from .loader_options import DATALOADERS

MEAN = 'mean'


def preprocessor_fill(cfg) -> Optional[List[float]]:
    """The preprocessor's mean in the loaded image's channel order (None: no mean declared)."""
    preprocessor = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor')
    mean = (preprocessor or {}).get('mean')
    if mean is None:
        return None
    mean = [float(value) for value in mean]
    return mean[::-1] if preprocessor.get('to_rgb') else mean


def _fill_means(node: Any, fill: Optional[List[float]]) -> None:
    if isinstance(node, dict):
        if node.get('fill_color') == MEAN:
            if fill is None:
                raise ConfigError(f"{node.get('type', 'a transform')}: fill_color='mean' needs "
                                  'the mean of data_preprocessor; declare it there (e.g. '
                                  'mean=[123.675, 116.28, 103.53]) or give fill_color values.')
            node['fill_color'] = list(fill)
        for value in node.values():
            _fill_means(value, fill)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _fill_means(value, fill)


def apply_fill_mean(cfg) -> None:
    """Every ``fill_color='mean'`` of the dataloaders' and the top-level ``*_pipeline``
    pipelines → the preprocessor's mean."""
    fill = preprocessor_fill(cfg)
    for name in list(DATALOADERS) + [key for key in cfg if key.endswith('_pipeline')]:
        _fill_means(cfg.get(name), fill)
