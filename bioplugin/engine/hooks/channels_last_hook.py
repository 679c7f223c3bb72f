from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpretrain.registry import HOOKS

from ..precision import channels_last


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Store the model's convolution weights channels-last (NHWC) before training starts;
    with bfloat16 / float16 autocast this runs markedly faster on CPUs and GPUs. The mixed
    precision switch adds it on GPUs (``precision='auto'``); by hand::

        custom_hooks = [dict(type='ChannelsLastHook')]
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        if is_model_wrapper(runner.model):
            # DDP keeps views of the parameters: converting them after wrapping breaks those,
            # so BioRunner.wrap_model converts a distributed model before it wraps it
            return
        channels_last(runner.model)
