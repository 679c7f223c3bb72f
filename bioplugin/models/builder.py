"""Build the classifier a config describes, exactly as MMEngine's Runner does, and load a
trained checkpoint into it."""
from typing import Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.model import BaseTTAModel, is_model_wrapper

from mmpretrain.registry import MODELS

from ..engine.checkpoint_io import checkpoint_classes, load_weights, read_checkpoint


def build_model(cfg: Config, pretrained: bool = True):
    """``cfg.model`` with the top-level ``data_preprocessor`` (normalisation) merged in, the way
    the Runner builds it. ``pretrained=False`` drops the backbone's ``init_cfg`` (no ImageNet
    weights are looked for: the weights come from a checkpoint, or do not matter)::

        model = build_model(Config.fromfile('configs/bio_resnext.py'), pretrained=False)
    """
    model_cfg = dict(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    if not pretrained and 'backbone' in model_cfg:
        model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=None)
    return MODELS.build(model_cfg)


def bare_model(model):
    """The classifier inside DDP and test-time-augmentation wrappers."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def load_trained_model(cfg: Config, checkpoint: str) -> Tuple[torch.nn.Module, Optional[tuple]]:
    """The config's classifier with the weights of ``checkpoint`` (checked tensor by tensor)
    and the class names the checkpoint records (None if it records none). The file is
    mapped, not read: its tensors become the model's, and a training checkpoint's optimizer
    state is never loaded."""
    model = build_model(cfg, pretrained=False)
    state = read_checkpoint(checkpoint, mmap=True)
    load_weights(model, state, checkpoint, assign=True)
    return model, checkpoint_classes(state)
