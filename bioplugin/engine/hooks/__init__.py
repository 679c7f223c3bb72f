from .epoch_end_checkpoint_hook import EpochEndCheckpointHook
from .parameter_count_hook import ParameterCountHook, count_parameters
from .resumable_early_stopping_hook import ResumableEarlyStoppingHook

__all__ = ['EpochEndCheckpointHook', 'ParameterCountHook', 'ResumableEarlyStoppingHook',
           'count_parameters']
