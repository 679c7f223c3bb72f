from .checkpoint_allowlist import CHECKPOINT_SAFE_GLOBALS, allow_checkpoint_types
# registered on import: the 'atomic_local' file backend, the safe local checkpoint loader
from . import atomic_backend, checkpoint_io  # noqa: F401
from .hooks import (BadImageHook, EpochEndCheckpointHook, ParameterCountHook,
                    ReproducibilityHook, ResumableEarlyStoppingHook, count_parameters)
from .optim_wrappers import AutocastOptimWrapper

__all__ = ['AutocastOptimWrapper', 'BadImageHook', 'CHECKPOINT_SAFE_GLOBALS',
           'EpochEndCheckpointHook', 'ReproducibilityHook',
           'ParameterCountHook', 'ResumableEarlyStoppingHook', 'allow_checkpoint_types',
           'count_parameters']
