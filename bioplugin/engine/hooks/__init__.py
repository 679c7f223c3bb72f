from .bad_image_hook import BadImageHook
from .channels_last_hook import ChannelsLastHook
from .epoch_end_checkpoint_hook import EpochEndCheckpointHook
from .inference_layout_hook import InferenceLayoutHook
from .parameter_count_hook import ParameterCountHook, count_parameters
from .reproducibility_hook import ReproducibilityHook
from .resumable_early_stopping_hook import ResumableEarlyStoppingHook

__all__ = ['BadImageHook', 'ChannelsLastHook', 'EpochEndCheckpointHook', 'InferenceLayoutHook',
           'ParameterCountHook', 'ReproducibilityHook', 'ResumableEarlyStoppingHook',
           'count_parameters']
