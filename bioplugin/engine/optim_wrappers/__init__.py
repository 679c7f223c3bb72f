from .autocast_optim_wrapper import AutocastOptimWrapper
from .module_lr_mult_constructor import ModuleLrMultConstructor
from .state_layout import match_parameter_layout

__all__ = ['AutocastOptimWrapper', 'ModuleLrMultConstructor', 'match_parameter_layout']
