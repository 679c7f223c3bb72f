"""What every benchmark case shares: settings, timing, process isolation and the model."""
import contextlib
import multiprocessing
import os
import resource
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from bioplugin.engine.cpu_info import cpu_flags
from bioplugin.models import build_model as build_classifier_model

# 'amp': training against the plain loop with float16 autocast and loss scaling (GPUs only);
# 'layout': BioClassifier's float32 CPU layouts against each other (not in a default run)
CASES = ('aug', 'inference', 'fp32', 'onnx', 'layout', 'training', 'amp', 'overhead')
DEFAULT_CASES = tuple(case for case in CASES if case != 'layout')
# oneDNN kernels no wider than AVX2: how PyTorch runs on a CPU without AVX-512 or bfloat16
AVX2_ONLY = {'ONEDNN_MAX_CPU_ISA': 'AVX2'}


@dataclass
class BenchmarkSettings:
    """One benchmark run. Sizes are ``(width, height)``; ``device`` is ``cpu`` or ``cuda[:N]``.

    ``warmup`` counts untimed steps: images (augmentation), batches (inference) or iterations
    (training). Inference scores ``iters × batch_size`` images per repetition; training times
    ``iters`` iterations after the warm-up and takes the median iteration. Each side of a row
    runs ``pairs`` times in fresh processes, alternating with the side it is compared with.
    """

    config: str = 'configs/bio_resnext.py'
    batch_size: int = 8
    iters: int = 3
    warmup: int = 1
    repeats: int = 2
    pairs: int = 5
    num_workers: int = 2
    device: str = 'cpu'
    image_size: Tuple[int, int] = (500, 375)
    large_size: Tuple[int, int] = (3000, 2000)
    aug_images: int = 64
    aug_threads: int = 1
    num_classes: int = 4
    only: Tuple[str, ...] = DEFAULT_CASES
    # ONNX rows: a trained checkpoint and its data (int8 agreement on its val images); by
    # default a randomly initialised model calibrated on the synthetic photos
    checkpoint: Optional[str] = None
    data_root: Optional[str] = None
    calibration_images: int = 64

    @property
    def large_images(self) -> int:
        """Photo-size images are 20-50× slower to decode: a quarter as many of them."""
        return max(2, self.aug_images // 4)

    @property
    def train_images(self) -> int:
        """Exactly one epoch of ``warmup + iters`` full batches."""
        return self.batch_size * (self.warmup + self.iters)


def model_options(settings: BenchmarkSettings) -> dict:
    """``--cfg-options`` of every case: the synthetic class count, no pretrained download."""
    return {'model.head.num_classes': settings.num_classes, 'model.backbone.init_cfg': None}


def build_model(cfg: Config, init_weights: bool = True) -> torch.nn.Module:
    """The config's classifier with the top-level data preprocessor merged in, as the Runner
    and ``BioClassifier`` build it; ``init_weights``: the Runner's random initialisation."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model = build_classifier_model(cfg)
    if init_weights:
        model.init_weights()
    return model


def model_name(cfg: Config) -> str:
    """``ResNeXt101`` from ``backbone=dict(type='ResNeXt', depth=101)``."""
    backbone = cfg.model.backbone
    return f"{backbone.type}{backbone.get('depth', '')}"


def take(items: Sequence, count: int) -> list:
    """``count`` items, cycling through ``items``."""
    return [items[i % len(items)] for i in range(count)]


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so that a clock reading covers it."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_repeats(run: Callable[[Sequence], object], items: Sequence, warmup_items: Sequence,
                 repeats: int, device: str) -> dict:
    """Call ``run(warmup_items)`` once, then ``run(items)`` ``repeats`` times; images/s of
    each repetition and their median."""
    if warmup_items:
        run(warmup_items)
    rates = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run(items)
        synchronize(device)
        rates.append(len(items) / (time.perf_counter() - start))
    return dict(images_per_s=statistics.median(rates), rates=rates)


def iteration_rate(stamps: Sequence[float], warmup: int, batch_size: int,
                   starts: Optional[Sequence[float]] = None) -> dict:
    """Images/s from the clock readings taken after every training iteration: the iterations
    after the first ``warmup`` (at least one, which has no start reading) and their median.
    With ``starts``, the readings when each iteration had its batch, also the time each waited
    for data (``data_s``, like MMEngine's logged ``data_time``) and the share of the timed
    iterations' time that was waiting (``data_share``)."""
    skip = max(warmup, 1) - 1
    durations = [b - a for a, b in zip(stamps, stamps[1:])][skip:]
    if not durations:
        raise ValueError('No timed iterations: run more iterations than warm-up ones.')
    rate = dict(images_per_s=batch_size / statistics.median(durations), iteration_s=durations)
    if starts is not None:
        waits = [start - end for end, start in zip(stamps, starts[1:])][skip:]
        rate.update(data_s=waits, data_share=sum(waits) / sum(durations))
    return rate


def is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's spatial convolutions hold channels-last weights."""
    weights = [m.weight for m in model.modules()
               if isinstance(m, torch.nn.Conv2d) and m.weight.shape[2:] != (1, 1)]
    return any(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
               for w in weights)


def describe_precision(precision: Optional[dict]) -> str:
    """``'bfloat16 autocast, channels_last'`` or ``'fp32, NCHW'`` from a precision dict
    (``autocast``: dtype name or ``None``, ``channels_last``, ``loss_scale``)."""
    if not precision:
        return 'fp32, NCHW'
    dtype = f"{precision['autocast']} autocast" if precision['autocast'] else 'fp32'
    layout = 'channels_last' if precision['channels_last'] else 'NCHW'
    return f'{dtype}, {layout}' + (', loss scaling' if precision.get('loss_scale') else '')


def cpu_features(cpuinfo: str = '/proc/cpuinfo') -> Dict[str, bool]:
    """Which of the instruction sets that decide CPU inference speed this CPU has."""
    flags = cpu_flags(cpuinfo)
    return {'AVX2': 'avx2' in flags, 'AVX-512': 'avx512f' in flags,
            'VNNI': bool({'avx512_vnni', 'avx_vnni', 'amx_int8'} & flags),
            'bfloat16': bool({'avx512_bf16', 'amx_bf16', 'bf16'} & flags),
            'AMX': bool({'amx_tile', 'amx_bf16', 'amx_int8'} & flags)}


def describe_cpu(features: Dict[str, bool]) -> str:
    """``'AVX2 yes, AVX-512 yes, VNNI yes, bfloat16 yes, AMX no'``."""
    return ', '.join(f"{name} {'yes' if present else 'no'}" for name, present in features.items())


def limit_threads(threads: int) -> None:
    """Run torch and OpenCV on ``threads`` threads, as in a DataLoader worker (1)."""
    import cv2
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``VmHWM`` of the process's own address space where available: ``ru_maxrss``
    survives ``exec`` and so starts at the spawning parent's size (what the parent held when
    it started the case, e.g. decoded photos), hiding the case's own peak.
    """
    try:
        with open('/proc/self/status') as status:
            for line in status:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    scale = 2.0**20 if sys.platform == 'darwin' else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _peak_memory(device: str) -> dict:
    """This process's peak resident memory (and peak CUDA allocation) in MiB; ``ru_maxrss``
    and the largest DataLoader worker's for reference."""
    peak = dict(peak_rss_mib=peak_rss_mib(),
                ru_maxrss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                workers_peak_rss_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    if device.startswith('cuda') and torch.cuda.is_initialized():
        peak['peak_cuda_mib'] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def _child_main(connection, function, args, device, log_file, start_method) -> None:
    """Body of an isolated case: output to ``log_file``, result or traceback to the parent.
    DataLoader workers start as in the parent (a spawned child would spawn them too, paying
    a fresh interpreter per worker and loader)."""
    multiprocessing.set_start_method(start_method, force=True)
    with open(log_file, 'a') as log:
        os.dup2(log.fileno(), sys.stdout.fileno())
        os.dup2(log.fileno(), sys.stderr.fileno())
    try:
        result = function(*args)
        if isinstance(result, dict):
            result.update(_peak_memory(device))
        connection.send(('ok', result))
    except BaseException:  # noqa: B902 (report everything, the parent raises)
        connection.send(('error', traceback.format_exc()))
    finally:
        connection.close()


def child_environment(device: str) -> Dict[str, str]:
    """Environment that shows a case exactly the device asked for (``cpu``: no GPU)."""
    if device == 'cpu':
        return {'CUDA_VISIBLE_DEVICES': ''}
    if device.startswith('cuda:'):
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        index = int(device.split(':', 1)[1])
        return {'CUDA_VISIBLE_DEVICES': visible.split(',')[index] if visible else str(index)}
    return {}


def child_device(device: str) -> str:
    """The device name inside an isolated case, where only the chosen GPU is visible."""
    return 'cpu' if device == 'cpu' else 'cuda'


@contextlib.contextmanager
def patched_environ(values: Dict[str, str]):
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_isolated(function: Callable, *args, device: str = 'cpu',
                 log_file: Optional[str] = None, env: Optional[Dict[str, str]] = None):
    """``function(*args)`` in a fresh spawned interpreter; its result, a dict to which the
    child's peak memory is added. ``function`` must be importable (module level). The child's
    output goes to ``log_file``; ``env`` adds environment variables (e.g. :data:`AVX2_ONLY`);
    a failure raises ``RuntimeError`` with its traceback."""
    context = multiprocessing.get_context('spawn')
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(sender, function, args, child_device(device), log_file or os.devnull,
              multiprocessing.get_start_method()))
    with patched_environ(dict(child_environment(device), **(env or {}))):
        process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        status, payload = 'error', 'the process died without a result'
    process.join()
    if status != 'ok':
        name = getattr(function, '__qualname__', function)
        raise RuntimeError(f'Benchmark case {name} failed (exit code {process.exitcode}):\n'
                           f'{payload}')
    return payload
