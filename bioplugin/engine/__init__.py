from .checkpoint_allowlist import CHECKPOINT_SAFE_GLOBALS, allow_checkpoint_types
# registered on import: the 'atomic_local' file backend, the safe local checkpoint loader
from . import atomic_backend, checkpoint_io  # noqa: F401
from .hooks import (BadImageHook, EpochEndCheckpointHook, ParameterCountHook,
                    RecoveryCheckpointHook,
                    ReproducibilityHook, ResumableEarlyStoppingHook, count_parameters)
from .loops import ResumableEpochBasedTrainLoop
from .optim_wrappers import AutocastOptimWrapper
from .runner import BioRunner

__all__ = ['AutocastOptimWrapper', 'BadImageHook', 'BioRunner', 'CHECKPOINT_SAFE_GLOBALS',
           'EpochEndCheckpointHook', 'ReproducibilityHook',
           'ParameterCountHook', 'RecoveryCheckpointHook', 'ResumableEarlyStoppingHook',
           'ResumableEpochBasedTrainLoop', 'allow_checkpoint_types',
           'count_parameters']
