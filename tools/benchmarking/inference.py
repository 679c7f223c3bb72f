"""Inference throughput: ``BioClassifier.predict_scores`` (the ``tools/test.py`` path, with
whatever precision it applies) vs a plain fp32 eval loop on the same weights."""
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from bioplugin.apis import BioClassifier, load_config
from bioplugin.engine.checkpoint_io import load_weights, read_checkpoint

from .common import (BenchmarkSettings, build_model, is_channels_last, model_options,
                     time_repeats)
from .reference import ImagePathDataset, seed_test_transform

AUTOCAST_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}


def save_random_checkpoint(settings: BenchmarkSettings, path: str) -> str:
    """A randomly initialised model of the config, saved as ``tools/train.py`` would, with
    classes ``0 … num_classes-1``. Returns ``path``."""
    model = build_model(load_config(settings.config, model_options(settings)))
    classes = [str(i) for i in range(settings.num_classes)]
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': classes}}}, path)
    return path


def _time_inference(score, settings: BenchmarkSettings, paths: Sequence[str]) -> dict:
    warmup = list(paths[:settings.warmup * settings.batch_size])
    return time_repeats(score, paths, warmup, settings.repeats, settings.device)


def ours_inference(settings: BenchmarkSettings, checkpoint: str, paths: Sequence[str]) -> dict:
    """Images/s of ``BioClassifier(cfg, checkpoint).predict_scores``, and the precision the
    classifier chose."""
    cfg = load_config(settings.config, model_options(settings))
    classifier = BioClassifier(cfg, checkpoint, device=settings.device)
    result = _time_inference(
        lambda images: classifier.predict_scores(images, settings.batch_size,
                                                 settings.num_workers),
        settings, paths)
    precision = getattr(classifier, 'precision', 'fp32')  # 'bf16', 'fp16' or 'fp32'
    return dict(result, precision=dict(autocast=AUTOCAST_DTYPES.get(precision),
                                       channels_last=is_channels_last(classifier.model)))


def reference_inference(settings: BenchmarkSettings, checkpoint: str,
                        paths: Sequence[str]) -> dict:
    """Images/s of a plain fp32 NCHW ``torch.no_grad`` loop over a torchvision DataLoader."""
    model = build_model(load_config(settings.config, model_options(settings)),
                        init_weights=False)
    load_weights(model, read_checkpoint(checkpoint), checkpoint)
    model = model.to(settings.device).eval()
    transform = seed_test_transform()

    @torch.no_grad()
    def score(images):
        loader = DataLoader(ImagePathDataset(images, transform), batch_size=settings.batch_size,
                            num_workers=settings.num_workers)
        scores = [model(batch.to(settings.device), mode='tensor').softmax(1).cpu()
                  for batch in loader]
        return torch.cat(scores).numpy()

    return _time_inference(score, settings, paths)
