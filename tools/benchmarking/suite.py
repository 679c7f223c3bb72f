"""Run the benchmark cases side by side, each side in its own fresh process."""
import dataclasses
import os
import os.path as osp
import platform
import sys
import time
from typing import Callable

import torch

from bioplugin.apis import load_config
from bioplugin.errors import ConfigError

from .augmentation import ours_augmentation, reference_augmentation
from .common import (AVX2_ONLY, CASES, BenchmarkSettings, child_device, cpu_features,
                     model_name, model_options, run_isolated)
from .data import make_photo_folder, make_train_folder
from .inference import (export_models, onnx_inference, ours_inference, reference_inference,
                        save_random_checkpoint)
from .report import build_rows
from .training import mirror_training, runner_training, seed_training


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_settings(settings: BenchmarkSettings) -> None:
    """Refuse settings that cannot give a measurement."""
    unknown = set(settings.only) - set(CASES)
    if unknown or not settings.only:
        raise ConfigError(f'--only takes a comma-separated subset of {",".join(CASES)}; got '
                          f'{",".join(settings.only)}.')
    counts = dict(batch_size=settings.batch_size, iters=settings.iters,
                  repeats=settings.repeats, aug_images=settings.aug_images,
                  aug_threads=settings.aug_threads, warmup=settings.warmup + 1,
                  num_workers=settings.num_workers + 1)
    for name, value in counts.items():
        if value < 1:
            raise ConfigError(f'--{name.replace("_", "-")} is too small ({value}).')
    if {'training', 'overhead'} & set(settings.only) and settings.warmup < 1:
        raise ConfigError('Training needs --warmup 1 or more: the first iteration has no '
                          'start time.')
    if bool(settings.checkpoint) != bool(settings.data_root):
        raise ConfigError('--checkpoint and --data-root go together: the trained checkpoint '
                          'and the dataset it was trained on.')
    if settings.calibration_images < 1:
        raise ConfigError('--calibration-images must be at least 1.')
    if settings.device.startswith('cuda') and not torch.cuda.is_available():
        raise ConfigError(f'--device {settings.device}: no CUDA device here.')


def cpu_model(cpuinfo: str = '/proc/cpuinfo') -> str:
    """``'AMD EPYC 9R14 ...'`` from the kernel's CPU description, or ``''``."""
    try:
        with open(cpuinfo, encoding='utf-8', errors='replace') as file:
            for line in file:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return ''


def environment(settings: BenchmarkSettings, load_before: float) -> dict:
    """Versions, hardware and the machine's load (1-minute average) before and after."""
    info = dict(python=platform.python_version(), torch=torch.__version__,
                cpu=cpu_model() or platform.processor() or platform.machine(),
                cpu_features=cpu_features(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), device=settings.device,
                load_average_before=load_before, load_average_after=os.getloadavg()[0])
    if settings.device.startswith('cuda'):
        info.update(gpu=torch.cuda.get_device_name(settings.device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def run_benchmark(settings: BenchmarkSettings, work_dir: str,
                  log: Callable[[str], None] = _stderr) -> dict:
    """Measure the cases of ``settings.only``; returns ``dict(rows, measurements, labels,
    settings, environment, wall_s)``. Synthetic data, checkpoint and per-process logs go to
    ``work_dir``."""
    check_settings(settings)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5 * os.cpu_count():
        log(f'warning: load average {load:.1f} on {os.cpu_count()} CPUs; other processes will '
            'slow the measurements down unevenly.')
    child = dataclasses.replace(settings, device=child_device(settings.device))
    name = model_name(load_config(settings.config, model_options(settings)))
    logs = osp.join(work_dir, 'logs')
    os.makedirs(logs, exist_ok=True)

    def measure(function: Callable[..., dict], *args, env=None) -> dict:
        """``function(child settings, *args)`` in a fresh process."""
        log(f'{function.__name__} {" ".join(f"{k}={v}" for k, v in (env or {}).items())}...')
        result = run_isolated(function, child, *args, device=settings.device,
                              log_file=osp.join(logs, f'{function.__name__}.log'), env=env)
        log(f"  {result['images_per_s']:.2f} img/s, peak {result['peak_rss_mib']:.0f} MiB")
        return result

    measurements, labels = {}, {}
    selected = set(settings.only)
    if {'aug', 'inference', 'fp32', 'onnx'} & selected:
        count = max(settings.aug_images, settings.iters * settings.batch_size)
        photos = make_photo_folder(osp.join(work_dir, 'photos'), count, settings.image_size)
    if 'aug' in selected:
        large = make_photo_folder(osp.join(work_dir, 'large'), settings.large_images,
                                  settings.large_size, seed=1)
        for key, size, paths in (('aug_small', settings.image_size,
                                  photos[:settings.aug_images]),
                                 ('aug_large', settings.large_size, large)):
            log(f'{key}: {len(paths)} images of {size[0]}x{size[1]}')
            labels[key] = f'augmentation {key[4:]} ({size[0]}x{size[1]})'
            measurements[key] = dict(ours=measure(ours_augmentation, paths),
                                     reference=measure(reference_augmentation, paths))
    if {'inference', 'fp32', 'onnx'} & selected:
        checkpoint = run_isolated(save_random_checkpoint, child,
                                  osp.join(work_dir, 'random_init.pth'), device='cpu',
                                  log_file=osp.join(logs, 'save_random_checkpoint.log'))
        paths = photos[:settings.iters * settings.batch_size]
        plain_loop = []  # the fp32 reference, measured once for every row that needs it

        def reference() -> dict:
            if not plain_loop:
                plain_loop.append(measure(reference_inference, checkpoint, paths))
            return plain_loop[0]

    if 'inference' in selected:
        labels['inference'] = f'inference {name}'
        measurements['inference'] = dict(ours=measure(ours_inference, checkpoint, paths),
                                         reference=reference())
    if 'fp32' in selected:  # a CPU without AVX-512 and bfloat16, on any x86 CPU
        labels['inference_avx2'] = f'inference {name} fp32, AVX2 kernels'
        measurements['inference_avx2'] = dict(
            ours=measure(ours_inference, checkpoint, paths, 'fp32', env=AVX2_ONLY),
            reference=measure(reference_inference, checkpoint, paths, env=AVX2_ONLY))
    if 'onnx' in selected:
        data_root = settings.data_root
        if not data_root:  # calibration and check images for the random weights
            data_root = osp.join(work_dir, 'calibration')
            make_train_folder(data_root, settings.calibration_images, settings.num_classes,
                              settings.image_size, seed=3)
        log(f'export_models ({"trained" if settings.checkpoint else "random"} weights) ...')
        exported = run_isolated(export_models, child, settings.checkpoint or checkpoint,
                                data_root, osp.join(work_dir, 'onnx', 'model.onnx'),
                                device='cpu', log_file=osp.join(logs, 'export_models.log'))
        for key, file in (('onnx_fp32', exported['onnx_file']),
                          ('onnx_int8', exported['int8_file'])):
            labels[key] = f'inference {name} ONNX Runtime {key[5:]}'
            measurements[key] = dict(ours=measure(onnx_inference, file, paths),
                                     reference=reference())
        measurements['onnx_int8']['ours']['agreement'] = dict(
            exported['int8_check'], split=exported['check_split'],
            trained=bool(settings.checkpoint))
    if 'amp' in selected and not settings.device.startswith('cuda'):
        log('amp: float16 autocast with loss scaling needs a GPU; left out on the CPU.')
        selected.discard('amp')
    if {'training', 'amp', 'overhead'} & selected:
        data_root = osp.join(work_dir, 'data')
        make_train_folder(data_root, settings.train_images, settings.num_classes,
                          settings.image_size, seed=2)
        args = (data_root, osp.join(work_dir, 'runner'))
        runner = measure(runner_training, *args)
        if 'training' in selected:
            labels['training'] = f'training {name}'
            measurements['training'] = dict(ours=runner, reference=measure(seed_training, *args))
        if 'amp' in selected:
            labels['training_amp'] = f'training {name} vs float16 AMP'
            measurements['training_amp'] = dict(
                ours=runner, reference=measure(seed_training, *args, 'float16'))
        if 'overhead' in selected:
            labels['overhead'] = 'Runner overhead'
            measurements['overhead'] = dict(
                ours=runner, reference=measure(mirror_training, *args, runner['precision']))
    return dict(rows=build_rows(measurements, labels, cpu_features()),
                measurements=measurements,
                labels=labels, settings=dataclasses.asdict(settings),
                environment=environment(settings, load), wall_s=time.perf_counter() - start)
