from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...models.builder import bare_model
from ..precision import model_device_type, prepare_for_inference, uses_channels_last


@HOOKS.register_module()
class InferenceLayoutHook(Hook):
    """Before a test run, copy the weights into the form inference runs fastest with
    (channels-last convolutions on CPU and under mixed precision, bfloat16 ones for
    ``'bf16'``; see
    :func:`~bioplugin.engine.precision.prepare_for_inference`). ``BioRunner`` adds it with the
    config's resolved ``precision``; by hand::

        custom_hooks = [dict(type='InferenceLayoutHook', precision='bf16')]
    """

    priority = 'VERY_HIGH'

    def __init__(self, precision: str = 'fp32'):
        self.precision = precision

    def before_test(self, runner) -> None:
        model = bare_model(runner.model)
        device = model_device_type(model)
        if uses_channels_last(self.precision, device):
            prepare_for_inference(model, self.precision, device)
