"""Run the benchmark cases side by side, each side in its own fresh process."""
import dataclasses
import os
import os.path as osp
import platform
import sys
import time
from typing import Callable, Dict, List

import torch

from bioplugin.apis import load_config
from bioplugin.engine.cpu_info import cpu_identity, cpu_name
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
                  repeats=settings.repeats, pairs=settings.pairs, aug_images=settings.aug_images,
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


def environment(settings: BenchmarkSettings, load_before: float) -> dict:
    """Versions, hardware and the machine's load (1-minute average) before and after."""
    cpu = cpu_identity()
    info = dict(python=platform.python_version(), torch=torch.__version__,
                cpu=cpu_name(cpu), cpu_identity=cpu,
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
    ``work_dir``. Every side of a row runs ``settings.pairs`` times, each in a fresh process,
    in alternation with the other sides it is compared with (see :func:`alternate`)."""
    check_settings(settings)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    if load > 0.5 * os.cpu_count():
        log(f'warning: load average {load:.1f} on {os.cpu_count()} CPUs; other processes will '
            'slow the measurements down unevenly (the intervals show how much).')
    child = dataclasses.replace(settings, device=child_device(settings.device))
    name = model_name(load_config(settings.config, model_options(settings)))
    logs = osp.join(work_dir, 'logs')
    os.makedirs(logs, exist_ok=True)
    # the layout probe's cache: empty at the start, shared by the run's processes
    cache = {'XDG_CACHE_HOME': osp.join(work_dir, 'cache')}

    def alternate(title: str, sides: Dict[str, tuple]) -> Dict[str, List[dict]]:
        """``{name: (function, args, env)}`` → ``{name: [result of each pair]}``: round ``i``
        runs ``function(child settings, *args)`` of every side once, each in a fresh process,
        in the order given, reversed in every other round (so that no side always runs
        right after another). ``args`` may be a function of the results so far."""
        results = {side: [] for side in sides}
        for pair in range(settings.pairs):
            for side in (list(sides) if pair % 2 == 0 else list(sides)[::-1]):
                function, args, env = sides[side]
                args = args(results) if callable(args) else args
                result = run_isolated(function, child, *args, device=settings.device,
                                      log_file=osp.join(logs, f'{title}_{side}.log'),
                                      env=dict(cache, **(env or {})))
                results[side].append(result)
                log(f"{title} {pair + 1}/{settings.pairs} {side}: "
                    f"{result['images_per_s']:.2f} img/s, peak {result['peak_rss_mib']:.0f} MiB")
        return results

    def compare(results: Dict[str, List[dict]], reference: str, **rows: str) -> None:
        """Rows ``{key: side}`` of ``results``, each against the ``reference`` side."""
        for key, side in rows.items():
            measurements[key] = dict(ours=results[side], reference=results[reference])

    measurements, labels = {}, {}
    selected = set(settings.only)
    if {'aug', 'inference', 'fp32', 'onnx', 'layout'} & selected:
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
            compare(alternate(key, {'reference': (reference_augmentation, (paths,), None),
                                    'ours': (ours_augmentation, (paths,), None)}),
                    'reference', **{key: 'ours'})
    if {'inference', 'fp32', 'onnx', 'layout'} & selected:
        checkpoint = run_isolated(save_random_checkpoint, child,
                                  osp.join(work_dir, 'random_init.pth'), device='cpu',
                                  log_file=osp.join(logs, 'save_random_checkpoint.log'))
        paths = photos[:settings.iters * settings.batch_size]
    if {'inference', 'onnx'} & selected:
        # ours, and the ONNX files, each against the plain fp32 loop of the same pair
        sides = {'reference': (reference_inference, (checkpoint, paths), None)}
        if 'inference' in selected:
            labels['inference'] = f'inference {name}'
            sides['inference'] = (ours_inference, (checkpoint, paths), None)
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
                sides[key] = (onnx_inference, (file, paths), None)
        results = alternate('inference', sides)
        compare(results, 'reference', **{key: key for key in sides if key != 'reference'})
        if 'onnx' in selected:
            measurements['onnx_int8']['agreement'] = dict(
                exported['int8_check'], split=exported['check_split'],
                trained=bool(settings.checkpoint))
    if 'fp32' in selected:  # a CPU without AVX-512 and bfloat16, on any x86 CPU
        labels['inference_avx2'] = f'inference {name} fp32, AVX2 kernels'
        compare(alternate('inference_avx2', {
            'reference': (reference_inference, (checkpoint, paths), AVX2_ONLY),
            'ours': (ours_inference, (checkpoint, paths, 'fp32'), AVX2_ONLY)}),
            'reference', inference_avx2='ours')
    if 'layout' in selected:  # the float32 CPU layouts of BioClassifier, pinned
        for key, env, kernels in (('layout', None, ''), ('layout_avx2', AVX2_ONLY,
                                                         ', AVX2 kernels')):
            labels[key] = f'layout {name} fp32{kernels}: channels-last / NCHW'
            compare(alternate(key, {
                'reference': (ours_inference, (checkpoint, paths, 'fp32', 'nchw'), env),
                'ours': (ours_inference, (checkpoint, paths, 'fp32', 'channels_last'), env)}),
                'reference', **{key: 'ours'})
    if 'amp' in selected and not settings.device.startswith('cuda'):
        log('amp: float16 autocast with loss scaling needs a GPU; left out on the CPU.')
        selected.discard('amp')
    if {'training', 'amp', 'overhead'} & selected:
        data_root = osp.join(work_dir, 'data')
        make_train_folder(data_root, settings.train_images, settings.num_classes,
                          settings.image_size, seed=2)
        args = (data_root, osp.join(work_dir, 'runner'))
        sides = {}
        if 'training' in selected:
            labels['training'] = f'training {name}'
            sides['seed'] = (seed_training, args, None)
        if 'amp' in selected:
            labels['training_amp'] = f'training {name} vs float16 AMP'
            sides['seed_amp'] = (seed_training, args + ('float16',), None)
        sides['runner'] = (runner_training, args, None)
        if 'overhead' in selected:
            labels['overhead'] = 'Runner overhead'
            # the Runner's precision, from its first run (the first round runs it first)
            sides['mirror'] = (mirror_training,
                               lambda results: args + (results['runner'][0]['precision'],),
                               None)
        results = alternate('training', sides)
        compare(results, 'seed', **({'training': 'runner'} if 'training' in selected else {}))
        compare(results, 'seed_amp',
                **({'training_amp': 'runner'} if 'amp' in selected else {}))
        compare(results, 'mirror', **({'overhead': 'runner'} if 'overhead' in selected else {}))
    return dict(rows=build_rows(measurements, labels, cpu_features()),
                measurements=measurements,
                labels=labels, settings=dataclasses.asdict(settings),
                environment=environment(settings, load), wall_s=time.perf_counter() - start)
