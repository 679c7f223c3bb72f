"""Which memory layout float32 CPU inference runs its convolutions in, chosen on evidence.

oneDNN's channels-last (NHWC) and NCHW float32 convolutions are not equally fast on every
CPU: on some, channels-last wins, on others it loses (see docs/speed.md for the measurements).
``inference_layout`` in a config (default ``'auto'``) decides::

    inference_layout = 'auto'            # or 'channels_last', 'nchw'

- ``'channels_last'`` / ``'nchw'``: that layout, whatever the precision and device;
- ``'auto'``: channels-last under mixed precision (bfloat16 / float16), NCHW for float32 on a
  GPU, and for float32 on a CPU a short probe when the model first sees a real batch: the
  backbone runs :data:`PROBE_IMAGES` images of that batch in both layouts, in alternation
  (one untimed run each, then :data:`PROBE_ROUNDS` timed runs each), and keeps the layout
  with the lower median time. The outcome is cached in ``$XDG_CACHE_HOME/bioplugin/layout.json``
  (``~/.cache/...`` without it) per CPU (vendor, model name, family / model / stepping),
  torch version, oneDNN instruction-set cap (``ONEDNN_MAX_CPU_ISA``) and model (backbone
  type, parameter count, input size), so each machine probes once per model.

``BioRunner`` reads the key (its :class:`~.hooks.InferenceLayoutHook` prepares the model for
a test run) and ``BioClassifier`` honours it (and its ``inference_layout`` argument).
"""
import json
import os
import os.path as osp
import statistics
import tempfile
import time
from typing import Dict, Optional

import torch
from mmengine.logging import print_log

from ..errors import ConfigError
from ..fileio import user_cache_dir
from .cpu_info import cpu_name

LAYOUTS = ('auto', 'channels_last', 'nchw')
PROBE = 'probe'  # what 'auto' resolves to where only a measurement can tell
PROBE_IMAGES = 2
PROBE_ROUNDS = 3
CACHE_ENTRIES = 64  # machines x models one cache file remembers (a shared home directory)
_MEMORY_FORMATS = {'channels_last': torch.channels_last, 'nchw': torch.contiguous_format}


def check_layout(layout: str) -> str:
    """``layout`` if it is one of :data:`LAYOUTS`, else a :class:`ConfigError`."""
    if layout not in LAYOUTS:
        raise ConfigError(f'inference_layout={layout!r}: use one of {", ".join(LAYOUTS)}.')
    return layout


def resolve_layout(layout: str, precision: str, device_type: str) -> str:
    """``'channels_last'``, ``'nchw'`` or ``'probe'`` (float32 on a CPU, ``'auto'``)."""
    if check_layout(layout) != 'auto':
        return layout
    if precision != 'fp32':
        return 'channels_last'
    return PROBE if device_type == 'cpu' else 'nchw'


def set_conv_layout(module: torch.nn.Module, layout: str) -> None:
    """Store every 4-d convolution weight of ``module`` in ``layout``, one tensor at a time
    (a copy only where the layout changes)."""
    memory_format = _MEMORY_FORMATS[layout]
    for conv in module.modules():
        if isinstance(conv, torch.nn.Conv2d) and conv.weight.dim() == 4:
            if not conv.weight.is_contiguous(memory_format=memory_format):
                conv.weight.data = conv.weight.data.contiguous(memory_format=memory_format)


def cache_file() -> str:
    """Where probe outcomes are kept: ``$XDG_CACHE_HOME/bioplugin/layout.json``."""
    return user_cache_dir('layout.json')


def machine_key(target: torch.nn.Module, inputs: torch.Tensor) -> Dict[str, str]:
    """What a probe outcome holds for: this CPU, torch, oneDNN cap and model input."""
    isa = os.environ.get('ONEDNN_MAX_CPU_ISA') or os.environ.get('DNNL_MAX_CPU_ISA') or 'ALL'
    parameters = sum(p.numel() for p in target.parameters())
    size = 'x'.join(str(n) for n in inputs.shape[1:])
    return {'cpu': cpu_name(), 'torch': torch.__version__,
            'onednn_isa': isa, 'model': f'{type(target).__name__}, {parameters} parameters, '
                                        f'input {size}'}


def _key_text(key: Dict[str, str]) -> str:
    return json.dumps(key, sort_keys=True)


def read_cache(path: Optional[str] = None) -> dict:
    """``{key text: outcome}`` from the cache file (empty when missing or unreadable)."""
    try:
        with open(path or cache_file(), encoding='utf-8') as file:
            entries = json.load(file).get('entries', {})
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def write_cache(key: Dict[str, str], outcome: dict, path: Optional[str] = None) -> bool:
    """Add ``outcome`` under ``key`` (atomically: other processes read a whole file); keeps
    the :data:`CACHE_ENTRIES` newest. False where the cache cannot be written."""
    path = path or cache_file()
    entries = read_cache(path)
    entries.pop(_key_text(key), None)
    entries[_key_text(key)] = outcome
    entries = dict(list(entries.items())[-CACHE_ENTRIES:])
    try:
        os.makedirs(osp.dirname(path), exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=osp.dirname(path), suffix='.tmp')
        with os.fdopen(handle, 'w', encoding='utf-8') as file:
            json.dump({'entries': entries}, file, indent=1)
        os.replace(temporary, path)
        return True
    except OSError:
        return False


def probe_layouts(target: torch.nn.Module, inputs: torch.Tensor,
                  rounds: int = PROBE_ROUNDS) -> dict:
    """Time ``target`` on ``inputs`` in both layouts, alternating (one untimed run each,
    then ``rounds`` timed runs each, in the order A B B A A B ...): ``dict(layout,
    nchw_s, channels_last_s, probe_s)`` with the faster layout by median time (ties:
    channels-last), the timings and what the probe took. ``target`` is left in the
    winning layout."""
    order = ['nchw', 'channels_last']
    # warm-up runs, then B A A B B A ...: each switch of layout copies the weights once
    sequence = order + [order[((i + 1) // 2 + 1) % 2] for i in range(2 * rounds)]
    times = {layout: [] for layout in order}
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast('cpu', enabled=False):
        for step, layout in enumerate(sequence):
            set_conv_layout(target, layout)
            began = time.perf_counter()
            target(inputs)
            if step >= len(order):  # the first run of each layout builds oneDNN's kernels
                times[layout].append(time.perf_counter() - began)
    medians = {layout: statistics.median(times[layout]) for layout in order}
    layout = 'channels_last' if medians['channels_last'] <= medians['nchw'] else 'nchw'
    set_conv_layout(target, layout)
    return dict(layout=layout, nchw_s=times['nchw'], channels_last_s=times['channels_last'],
                probe_s=time.perf_counter() - start, images=len(inputs))


def choose_layout(target: torch.nn.Module, inputs: torch.Tensor) -> dict:
    """The cached outcome for this machine and model, or a new probe (then cached); the
    outcome says ``cached=True`` when it came from the cache."""
    key = machine_key(target, inputs)
    cached = read_cache().get(_key_text(key))
    if isinstance(cached, dict) and cached.get('layout') in _MEMORY_FORMATS:
        return dict(cached, cached=True)
    outcome = probe_layouts(target, inputs[:PROBE_IMAGES].detach().float().contiguous())
    stored = write_cache(key, dict(outcome, **key))
    print_log(f"Inference layout {outcome['layout']}: {outcome['images']} images take "
              f"{statistics.median(outcome['nchw_s']) * 1e3:.1f} ms NCHW, "
              f"{statistics.median(outcome['channels_last_s']) * 1e3:.1f} ms channels-last "
              f"(probe {outcome['probe_s']:.1f} s"
              + (f'; kept in {cache_file()}' if stored else '')
              + "); inference_layout='channels_last' or 'nchw' pins one.", logger='current')
    return dict(outcome, cached=False)


def probe_target(model: torch.nn.Module) -> torch.nn.Module:
    """What the probe times: the backbone (nearly all the convolutions), else the model."""
    backbone = getattr(model, 'backbone', None)
    return backbone if isinstance(backbone, torch.nn.Module) else model


class LayoutProbe:
    """Chooses the layout on the first real input of ``model``'s backbone: a forward
    pre-hook that removes itself, then converts the model's convolutions to the chosen
    layout before the batch runs. ``outcome`` holds the choice afterwards."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.target = probe_target(model)
        self.outcome: Optional[dict] = None
        cancel_probe(model)
        self.handle = self.target.register_forward_pre_hook(self, with_kwargs=True)
        self.target._layout_probe = self

    def __call__(self, module, args, kwargs):
        inputs = next((value for value in list(args) + list(kwargs.values())
                       if isinstance(value, torch.Tensor)), None)
        if inputs is None or inputs.dim() != 4 or not inputs.is_floating_point():
            return None  # not an image batch: wait for one
        self.remove()
        self.outcome = choose_layout(self.target, inputs)
        set_conv_layout(self.model, self.outcome['layout'])
        return None

    def remove(self) -> None:
        self.handle.remove()
        self.target.__dict__.pop('_layout_probe', None)


def cancel_probe(model: torch.nn.Module) -> None:
    """Remove a probe still waiting for ``model``'s first input."""
    for module in model.modules():
        probe = module.__dict__.get('_layout_probe')
        if probe is not None:
            probe.remove()
