from .bad_image_hook import BadImageHook
from .channels_last_hook import ChannelsLastHook
from .console_summary_hook import ConsoleSummaryHook
from .epoch_end_checkpoint_hook import EpochEndCheckpointHook
from .eval_autocast_hook import EvalAutocastHook
from .freeze_backbone_stages_hook import FreezeBackboneStagesHook
from .inference_layout_hook import InferenceLayoutHook
from .parameter_count_hook import ParameterCountHook, count_parameters
from .recovery_checkpoint_hook import PREEMPTED_EXIT_CODE, RecoveryCheckpointHook
from .reproducibility_hook import ReproducibilityHook
from .resumable_early_stopping_hook import ResumableEarlyStoppingHook

__all__ = ['BadImageHook', 'ChannelsLastHook', 'ConsoleSummaryHook', 'EpochEndCheckpointHook',
           'EvalAutocastHook', 'FreezeBackboneStagesHook',
           'InferenceLayoutHook',
           'PREEMPTED_EXIT_CODE', 'ParameterCountHook', 'RecoveryCheckpointHook',
           'ReproducibilityHook', 'ResumableEarlyStoppingHook',
           'count_parameters']
