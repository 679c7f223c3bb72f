"""Which arithmetic a run uses: bfloat16 / float16 autocast with channels_last, or float32.

``precision='auto'`` (the recipe's default) picks bfloat16 on CPUs with native bfloat16
(AVX512-BF16 or AMX on x86, BF16 on Arm) and on GPUs that support it, float16 with loss
scaling on older GPUs, and float32 everywhere else. ``--fp32`` forces float32.

Channels-last (NHWC) weights speed up mixed-precision inference on CPU and GPU and training
on GPU. Float32 inference on a CPU runs the layout ``inference_layout`` names, by default the
one a short probe finds faster on this CPU (see :mod:`.inference_layout`). CPU training stays
NCHW: in this torch build oneDNN's channels-last backward pass crashes or corrupts the heap on
CPU (float32 and bfloat16 alike), while its forward pass is sound.
"""
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch

from ..errors import ConfigError
from .cpu_info import cpu_flags
from .inference_layout import PROBE, LayoutProbe, cancel_probe, resolve_layout

PRECISIONS = ('auto', 'bf16', 'fp16', 'fp32')
MIXED_PRECISION_WRAPPERS = ('AutocastOptimWrapper', 'AmpOptimWrapper')
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
_CPU_BF16_FLAGS = {'avx512_bf16', 'amx_bf16', 'bf16'}


def cpu_has_native_bf16(cpuinfo: str = '/proc/cpuinfo') -> bool:
    """True when the CPU computes bfloat16 in hardware (so autocast pays off)."""
    return bool(_CPU_BF16_FLAGS & cpu_flags(cpuinfo))


def resolve_precision(precision: str, device_type: str) -> str:
    """``'bf16'``, ``'fp16'`` or ``'fp32'`` for ``precision`` on ``device_type``."""
    if precision not in PRECISIONS:
        raise ConfigError(f'precision={precision!r}: use one of {", ".join(PRECISIONS)}.')
    on_cuda = device_type == 'cuda'
    if precision == 'auto':
        if on_cuda:
            return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        return 'bf16' if device_type == 'cpu' and cpu_has_native_bf16() else 'fp32'
    if precision == 'fp16' and not on_cuda:
        raise ConfigError('float16 autocast needs a CUDA GPU; use precision bf16 on CPU.')
    if precision == 'bf16' and on_cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError('This GPU has no bfloat16; use precision fp16.')
    return precision


def autocast(precision: str, device_type: str):
    """The autocast context of a resolved precision (no-op for ``'fp32'``)."""
    if precision == 'fp32':
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=AUTOCAST_DTYPES[precision])


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Convolution weights in NHWC layout, which oneDNN and Tensor Cores run fastest."""
    return module.to(memory_format=torch.channels_last)


def prepare_for_inference(model: torch.nn.Module, precision: str, device_type: str = 'cpu',
                          layout: str = 'auto') -> torch.nn.Module:
    """Copy every weight into the model's own memory in the form inference runs fastest
    with, one tensor at a time: convolution weights in the layout ``layout`` resolves to
    (:func:`~.inference_layout.resolve_layout`: channels-last for mixed precision; for
    float32 on a CPU, with ``'auto'``, NCHW until the first batch arrives and a probe on it
    chooses), for bfloat16 also in bfloat16 (less memory, no casts per call). Normalisation
    layers, the classifier and the input normalisation stay float32, which keeps predictions
    as close to float32 ones as autocast alone. Weights assigned from a mapped checkpoint
    (``read_checkpoint(path, mmap=True)``) are thus never held twice, and the file is free
    once the checkpoint dict is dropped."""
    decision = resolve_layout(layout, precision, device_type)
    cancel_probe(model)
    for module in model.modules():
        conv = isinstance(module, torch.nn.Conv2d)
        conv_dtype = torch.bfloat16 if conv and precision == 'bf16' else torch.float32
        nhwc = conv and decision == 'channels_last'
        for param in module.parameters(recurse=False):
            param.data = _inference_copy(param.data, conv_dtype, nhwc)
        for name, buffer in module.named_buffers(recurse=False):
            setattr(module, name, _inference_copy(buffer, conv_dtype, nhwc))
    if decision == PROBE:
        LayoutProbe(model)
    return model


def _inference_copy(tensor: torch.Tensor, float_dtype: torch.dtype,
                    channels_last: bool) -> torch.Tensor:
    """A copy of ``tensor``, floating point in ``float_dtype``, 4-d channels-last if asked."""
    memory_format = (torch.channels_last if channels_last and tensor.dim() == 4
                     else torch.preserve_format)
    dtype = float_dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(dtype=dtype, memory_format=memory_format, copy=True)


@contextmanager
def float32_nchw(model: torch.nn.Module, precision: str, device_type: str = 'cpu',
                 layout: str = 'auto') -> Iterator[torch.nn.Module]:
    """The model in float32 and NCHW for the block (e.g. for gradients: oneDNN's
    channels-last backward is unsafe on CPU; a layout probe still waiting is put off), then
    back as :func:`prepare_for_inference` left it."""
    cancel_probe(model)
    model.float().to(memory_format=torch.contiguous_format)
    try:
        yield model
    finally:
        prepare_for_inference(model, precision, device_type, layout)


def device_type() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def model_device_type(model: torch.nn.Module) -> str:
    """``'cuda'`` or ``'cpu'``: where the model's parameters are (``'cpu'`` without any)."""
    return next(iter(model.parameters()), torch.zeros(0)).device.type


def trains_channels_last(cfg) -> bool:
    """Whether the config trains channels-last (a ``ChannelsLastHook`` among its hooks)."""
    return any(hook.get('type') == 'ChannelsLastHook' for hook in cfg.get('custom_hooks') or [])


def apply_precision(cfg) -> str:
    """Resolve the config's ``precision`` (default ``'auto'``) for this machine and set up
    training and evaluation for it; returns ``'bf16'``, ``'fp16'`` or ``'fp32'``.

    Mixed precision picks the optimizer wrapper (``AutocastOptimWrapper`` for bfloat16,
    MMEngine's ``AmpOptimWrapper`` with dynamic loss scaling for float16), turns on autocast in
    validation and test, and on a GPU trains channels-last. An ``AmpOptimWrapper`` asked for
    on a machine without CUDA (MMPretrain's ``tools/train.py --amp``) becomes bfloat16
    autocast. ``BioRunner`` calls this; in a config::

        precision = 'auto'   # or 'bf16', 'fp16' (CUDA), 'fp32'
    """
    device = device_type()
    wrapper = cfg.get('optim_wrapper')
    requested = cfg.get('precision', 'auto')
    if wrapper is not None and wrapper.get('type') == 'AmpOptimWrapper' and device == 'cpu':
        requested = 'bf16'  # MMEngine's float16 wrapper asserts CUDA
    cfg.precision = resolved = resolve_precision(requested, device)
    for name in ('val_cfg', 'test_cfg'):
        if cfg.get(name) is not None:
            # MMEngine's flag for autocast (its dtype: EvalAutocastHook)
            cfg[name].fp16 = resolved != 'fp32'
    if resolved == 'fp32':
        if wrapper is not None and wrapper.get('type') in MIXED_PRECISION_WRAPPERS:
            wrapper.type = 'OptimWrapper'  # precision decides, whatever the wrapper said
            wrapper.pop('loss_scale', None)
        return resolved
    if wrapper is not None:
        if resolved == 'fp16':  # float16 needs loss scaling
            wrapper.type = 'AmpOptimWrapper'
            wrapper.setdefault('loss_scale', 'dynamic')
        else:
            wrapper.type = 'AutocastOptimWrapper'
            wrapper.pop('loss_scale', None)
    if device == 'cuda' and not trains_channels_last(cfg):
        cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [dict(type='ChannelsLastHook')]
    return resolved
