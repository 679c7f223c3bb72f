from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS


def count_parameters(model) -> tuple:
    """``(total, trainable)`` parameter counts of a model."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


@HOOKS.register_module()
class ParameterCountHook(Hook):
    """Log the model's parameter count when training starts, and warn above a budget::

        custom_hooks = [dict(type='ParameterCountHook', budget=100e6)]
    """

    priority = 'VERY_LOW'

    def __init__(self, budget: Optional[float] = None):
        self.budget = budget

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        total, trainable = count_parameters(model)
        message = (f'Model parameters: {total / 1e6:.2f} M total, '
                   f'{trainable / 1e6:.2f} M trainable')
        if self.budget is None:
            runner.logger.info(message)
        elif total <= self.budget:
            runner.logger.info(f'{message} (within the {self.budget / 1e6:g} M budget)')
        else:
            runner.logger.warning(f'{message}: OVER the {self.budget / 1e6:g} M budget')
