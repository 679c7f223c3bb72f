"""Command-line choices of ``tools/train.py`` written into the config as the keys they stand for."""
import importlib.util
from typing import Optional

from mmengine.config import Config

from ..engine.hooks.freeze_backbone_stages_hook import is_freeze_hook
from ..errors import ConfigError
from ..models.backbones.stages import check_freeze_stages, takes_frozen_stages


def set_finetuning(cfg: Config, freeze_stages: Optional[int] = None,
                   head_lr_mult: Optional[float] = None) -> None:
    """The usual fine-tuning knobs, written into the config.

    ``freeze_stages=N`` freezes the stem and the first N backbone stages (``0``: stem only,
    ``-1``: none), checked against the backbone's own stages. A backbone whose constructor
    takes ``frozen_stages`` (MMPretrain's ResNet, MobileNetV2, VisionTransformer…) is given it;
    the others (``TIMMBackbone``, ``TorchvisionBackbone``) get a ``FreezeBackboneStagesHook``.
    ``head_lr_mult=M`` trains the model's ``head`` module (and no parameter of another module
    whose name merely contains "head") with M times the base learning rate. In a config::

        model = dict(backbone=dict(frozen_stages=2))  # or, for a timm / torchvision model:
        custom_hooks = [dict(type='FreezeBackboneStagesHook', stages=2)]
        optim_wrapper = dict(constructor='ModuleLrMultConstructor',
                             paramwise_cfg=dict(module_lr_mult=dict(head=10.)))
    """
    if freeze_stages is not None:
        check_freeze_stages(cfg.model.backbone, freeze_stages)
        if takes_frozen_stages(cfg.model.backbone):
            cfg.model.backbone.frozen_stages = freeze_stages
        else:
            hooks = [hook for hook in cfg.get('custom_hooks') or () if not is_freeze_hook(hook)]
            if freeze_stages >= 0:
                hooks.append(dict(type='FreezeBackboneStagesHook', stages=freeze_stages))
            cfg.custom_hooks = hooks
    if head_lr_mult is not None:
        if head_lr_mult <= 0:
            raise ConfigError('--head-lr-mult must be positive.')
        constructor = cfg.optim_wrapper.get('constructor', 'DefaultOptimWrapperConstructor')
        if constructor not in ('DefaultOptimWrapperConstructor', 'ModuleLrMultConstructor'):
            raise ConfigError(f'--head-lr-mult sets optim_wrapper.constructor='
                              f"'ModuleLrMultConstructor', but the config uses {constructor!r}; "
                              'set the head\'s learning rate in the config instead.')
        paramwise = dict(cfg.optim_wrapper.get('paramwise_cfg') or {})
        paramwise['module_lr_mult'] = dict(paramwise.get('module_lr_mult') or {},
                                           head=head_lr_mult)
        cfg.optim_wrapper.constructor = 'ModuleLrMultConstructor'
        cfg.optim_wrapper.paramwise_cfg = paramwise


def enable_tensorboard(cfg: Config) -> None:
    """Also log scalars for TensorBoard (``<work_dir>/<run>/vis_data/``); in a config::

        visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
                                        dict(type='TensorboardVisBackend')])
    """
    if importlib.util.find_spec('tensorboard') is None:
        raise ConfigError('TensorBoard logging needs the tensorboard package: '
                          'pip install tensorboard')
    backends = list(cfg.visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(backend.get('type') == 'TensorboardVisBackend' for backend in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer.vis_backends = backends


def set_seed(cfg: Config, seed: Optional[int]) -> None:
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
