from typing import Iterable, List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS

from ...errors import ConfigError
from ...models.backbones.stages import FrozenStages, freeze_backbone_stages

META_KEY = 'frozen_backbone_stages'


def freeze(model, stages: int) -> FrozenStages:
    """Freeze the stem and the first ``stages`` stages of the model's backbone."""
    model = model.module if is_model_wrapper(model) else model
    if not hasattr(model, 'backbone'):
        raise ConfigError(f'FreezeBackboneStagesHook freezes a backbone, and '
                          f'{type(model).__name__} has none; remove it from custom_hooks.')
    return freeze_backbone_stages(model.backbone, stages)


def is_freeze_hook(hook: dict) -> bool:
    return str(hook.get('type')).rpartition('.')[2] == 'FreezeBackboneStagesHook'


def freeze_before_wrapping(model, custom_hooks: Iterable[dict]) -> None:
    """Freeze as the config's ``FreezeBackboneStagesHook`` will, before DDP wraps the model
    (DDP expects a gradient for every parameter that required one when it wrapped)."""
    for hook in custom_hooks or ():
        if is_freeze_hook(hook):
            freeze(model, hook['stages'])


@HOOKS.register_module()
class FreezeBackboneStagesHook(Hook):
    """Freeze the stem and the first ``stages`` stages of a backbone that does not take
    ``frozen_stages`` itself (MMPretrain's ``TIMMBackbone``, bioplugin's
    ``TorchvisionBackbone``; ``tools/train.py --freeze-stages N`` writes it for those)::

        custom_hooks = [dict(type='FreezeBackboneStagesHook', stages=2)]

    ``stages=0`` freezes the stem only. Their parameters stop learning and their BatchNorm
    layers keep their running statistics (eval mode, re-applied after each ``model.train()``
    of the loop). Stages are found by module (:mod:`bioplugin.models.backbones.stages`); a
    backbone without stages, or with fewer, stops the run when training starts. Checkpoints
    record the count, and resuming with another is refused.
    """

    priority = 'VERY_HIGH'

    def __init__(self, stages: int):
        self.stages = stages
        self._norms: List = []

    def before_train(self, runner) -> None:
        frozen = freeze(runner.model, self.stages)
        self._norms = frozen.norms
        runner.logger.info(f'FreezeBackboneStagesHook: froze the stem and the first '
                           f'{self.stages} stages of the backbone: {", ".join(frozen.modules)}')
        self._keep_norms_in_eval()

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        # the loop calls model.train() after before_train_epoch, and again after validation
        self._keep_norms_in_eval()

    def _keep_norms_in_eval(self) -> None:
        for norm in self._norms:
            if norm.training:
                norm.eval()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[META_KEY] = self.stages

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = (checkpoint.get('meta') or {}).get(META_KEY)
        if getattr(runner, '_resume', False) and saved is not None and saved != self.stages:
            raise ConfigError(f'The run being resumed froze {saved} backbone stages, this '
                              f'config {self.stages}; resume with --freeze-stages {saved}.')
