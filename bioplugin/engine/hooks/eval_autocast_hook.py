import torch
from mmengine.hooks import Hook

from mmpretrain.registry import HOOKS

from ...models.builder import bare_model
from ..precision import AUTOCAST_DTYPES, model_device_type


@HOOKS.register_module()
class EvalAutocastHook(Hook):
    """Validate and test in the run's own autocast dtype.

    Mixed precision sets ``fp16=True`` in ``val_cfg`` and ``test_cfg``; MMEngine's loops then
    open ``autocast`` without a dtype, which is bfloat16 on a CPU but the device's default,
    float16, on a GPU — also for a run that trains in bfloat16 and stores bfloat16
    convolution weights for inference. During validation and test this hook makes the
    precision's dtype the default autocast dtype of the model's device, and puts the previous
    default back afterwards. ``BioRunner`` adds it with the config's resolved ``precision``;
    by hand::

        custom_hooks = [dict(type='EvalAutocastHook', precision='bf16')]
    """

    priority = 'VERY_HIGH'

    def __init__(self, precision: str = 'fp32'):
        self.precision = precision
        self._previous = None
        self._logged = False

    def _enter(self, runner, phase: str) -> None:
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:  # float32: no autocast
            return
        device = model_device_type(bare_model(runner.model))
        self._previous = (device, torch.get_autocast_dtype(device))
        torch.set_autocast_dtype(device, dtype)
        if not self._logged:
            runner.logger.info(f'{phase} with {str(dtype).replace("torch.", "")} autocast on '
                               f'{device}.')
            self._logged = True

    def _leave(self) -> None:
        if self._previous is not None:
            torch.set_autocast_dtype(*self._previous)
            self._previous = None

    def before_val(self, runner) -> None:
        self._enter(runner, 'Validation')

    def after_val(self, runner) -> None:
        self._leave()

    def before_test(self, runner) -> None:
        self._enter(runner, 'Test')

    def after_test(self, runner) -> None:
        self._leave()
