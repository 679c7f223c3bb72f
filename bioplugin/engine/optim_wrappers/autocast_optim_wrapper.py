from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast

from mmpretrain.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """bfloat16 autocast for the forward pass, on CPU as well as on GPU.

    MMEngine's ``AmpOptimWrapper`` only runs on accelerators; bfloat16 keeps float32's
    exponent range, so no loss scaling is needed. ``tools/train.py --amp`` picks this
    wrapper on CPU and ``AmpOptimWrapper`` (float16 + dynamic loss scale) on CUDA::

        optim_wrapper = dict(type='AutocastOptimWrapper')
    """

    def __init__(self, *args, dtype: str = 'bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), autocast(dtype=self.cast_dtype):
            yield
