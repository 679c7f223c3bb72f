from .autocast_optim_wrapper import AutocastOptimWrapper
from .state_layout import match_parameter_layout

__all__ = ['AutocastOptimWrapper', 'match_parameter_layout']
