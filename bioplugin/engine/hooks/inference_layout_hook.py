from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...models.builder import bare_model
from ..inference_layout import check_layout, resolve_layout
from ..precision import model_device_type, prepare_for_inference


@HOOKS.register_module()
class InferenceLayoutHook(Hook):
    """Before a test run, copy the weights into the form inference runs fastest with
    (convolutions in the layout ``layout`` resolves to, bfloat16 ones for ``'bf16'``; see
    :func:`~bioplugin.engine.precision.prepare_for_inference` and
    :mod:`~bioplugin.engine.inference_layout`). ``BioRunner`` adds it with the config's
    resolved ``precision`` and its ``inference_layout``; by hand::

        custom_hooks = [dict(type='InferenceLayoutHook', precision='bf16', layout='auto')]
    """

    priority = 'VERY_HIGH'

    def __init__(self, precision: str = 'fp32', layout: str = 'auto'):
        self.precision = precision
        self.layout = check_layout(layout)

    def before_test(self, runner) -> None:
        model = bare_model(runner.model)
        device = model_device_type(model)
        if (self.precision, resolve_layout(self.layout, self.precision, device)) != (
                'fp32', 'nchw'):  # float32 NCHW is how the model was built
            prepare_for_inference(model, self.precision, device, self.layout)
