"""Learning-rate multipliers by module, not by a substring of a parameter's name.

MMEngine's ``paramwise_cfg.custom_keys`` applies to every parameter whose name *contains* the
key: ``custom_keys={'head': dict(lr_mult=10.)}`` also speeds up a backbone's ``conv_head``
(EfficientNet's last convolution). ``module_lr_mult`` names top-level modules of the model
(``backbone``, ``neck``, ``head``) and multiplies the learning rate of their parameters only,
on top of whatever the other ``paramwise_cfg`` rules set::

    optim_wrapper = dict(constructor='ModuleLrMultConstructor',
                         paramwise_cfg=dict(module_lr_mult=dict(head=10.)))

``tools/train.py --head-lr-mult M`` writes exactly this.
"""
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmpretrain.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

from ...errors import ConfigError


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ModuleLrMultConstructor(DefaultOptimWrapperConstructor):
    """MMEngine's default constructor plus ``paramwise_cfg.module_lr_mult``."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.module_lr_mult = dict(self.paramwise_cfg.get('module_lr_mult') or {})
        for name, mult in self.module_lr_mult.items():
            if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
                raise ConfigError(f'optim_wrapper.paramwise_cfg.module_lr_mult.{name}={mult!r}: '
                                  'a learning-rate multiplier must be a positive number.')

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        bare = model.module if hasattr(model, 'module') else model
        modules = dict(bare.named_children())
        unknown = sorted(set(self.module_lr_mult) - set(modules))
        if unknown:
            raise ConfigError(f'optim_wrapper.paramwise_cfg.module_lr_mult names '
                              f'{", ".join(unknown)}, not a module of the model (it has '
                              f'{", ".join(modules)}).')
        owner = {id(param): name for name in self.module_lr_mult
                 for param in modules[name].parameters()}
        for group in optim_wrapper.optimizer.param_groups:
            # with paramwise_cfg set, MMEngine gives every parameter a group of its own
            names = {owner.get(id(param)) for param in group['params']}
            if len(names) > 1:
                raise ConfigError('module_lr_mult needs one parameter group per parameter; '
                                  'another paramwise_cfg rule merged modules into one group.')
            name = names.pop() if names else None
            if name is not None:
                group['lr'] = group['lr'] * self.module_lr_mult[name]
        return optim_wrapper
