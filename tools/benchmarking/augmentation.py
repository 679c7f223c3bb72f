"""Augmentation throughput in one process: the config's training pipeline vs the seed's chain.

Both sides run on ``settings.aug_threads`` threads (default 1: what a DataLoader worker gets,
since the Runner sets OpenCV to one thread and PyTorch workers use one torch thread).
"""
from typing import Callable, Sequence

from mmcv.transforms import Compose
from mmengine.registry import init_default_scope

from mmpretrain.registry import TRANSFORMS

from bioplugin.apis import load_config

from .common import BenchmarkSettings, limit_threads, take, time_repeats
from .reference import load_rgb, seed_train_transform


def config_train_pipeline(config: str) -> Callable[[dict], dict]:
    """``cfg.train_dataloader.dataset.pipeline`` built as the dataset builds it."""
    cfg = load_config(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return Compose([TRANSFORMS.build(t) for t in cfg.train_dataloader.dataset.pipeline])


def _time_per_image(process: Callable[[str], object], paths: Sequence[str],
                    settings: BenchmarkSettings) -> dict:
    limit_threads(settings.aug_threads)

    def run(items):
        for path in items:
            process(path)

    return time_repeats(run, paths, take(paths, settings.warmup), settings.repeats, 'cpu')


def ours_augmentation(settings: BenchmarkSettings, paths: Sequence[str]) -> dict:
    """Images/s of the config's training pipeline, fed ``dict(img_path=...)``."""
    pipeline = config_train_pipeline(settings.config)
    return _time_per_image(lambda path: pipeline(dict(img_path=path)), paths, settings)


def reference_augmentation(settings: BenchmarkSettings, paths: Sequence[str]) -> dict:
    """Images/s of the seed's PIL + torchvision chain."""
    transform = seed_train_transform()
    return _time_per_image(lambda path: transform(load_rgb(path)), paths, settings)
