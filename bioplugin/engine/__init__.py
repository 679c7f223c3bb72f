from .checkpoint_allowlist import CHECKPOINT_SAFE_GLOBALS, allow_checkpoint_types
from .hooks import (EpochEndCheckpointHook, ParameterCountHook, ResumableEarlyStoppingHook,
                    count_parameters)
from .optim_wrappers import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper', 'CHECKPOINT_SAFE_GLOBALS', 'EpochEndCheckpointHook',
           'ParameterCountHook', 'ResumableEarlyStoppingHook', 'allow_checkpoint_types',
           'count_parameters']
