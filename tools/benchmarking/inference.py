"""Inference throughput: ``BioClassifier.predict_scores`` (the ``tools/test.py`` path, with
whatever precision it applies, or an exported ONNX file) vs a plain fp32 eval loop on the
same weights."""
import os.path as osp
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from bioplugin.apis import BioClassifier, load_config
from bioplugin.deploy import export_onnx
from bioplugin.engine.checkpoint_io import checkpoint_classes, load_weights, read_checkpoint

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


def ours_inference(settings: BenchmarkSettings, checkpoint: str, paths: Sequence[str],
                   precision: Optional[str] = None, layout: Optional[str] = None) -> dict:
    """Images/s of ``BioClassifier(cfg, checkpoint).predict_scores``, and the precision and
    layout the classifier chose (``precision`` and ``layout`` override the config's)."""
    cfg = load_config(settings.config, model_options(settings))
    classifier = BioClassifier(cfg, checkpoint, device=settings.device, precision=precision,
                               inference_layout=layout)
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


def export_models(settings: BenchmarkSettings, checkpoint: str, data_root: str,
                  out_file: str) -> dict:
    """``tools/deploy/export_onnx.py --int8`` on ``checkpoint``: the fp32 and int8 files and
    their checks on ``data_root``'s val images (all of them)."""
    options = model_options(settings)
    if settings.checkpoint:  # a trained checkpoint: its own classes
        classes = checkpoint_classes(read_checkpoint(checkpoint, mmap=True))
        options['model.head.num_classes'] = len(classes)
    cfg = load_config(settings.config, options, work_dir=osp.dirname(out_file),
                      data_root=data_root)
    return export_onnx(cfg, checkpoint, out_file, int8=True, check_images=100000,
                       calibration_images=settings.calibration_images,
                       batch_size=settings.batch_size)


def onnx_inference(settings: BenchmarkSettings, onnx_file: str, paths: Sequence[str]) -> dict:
    """Images/s of ``BioClassifier(cfg, 'model.onnx').predict_scores``: the same loader and
    writer path, the model run by ONNX Runtime."""
    cfg = load_config(settings.config, model_options(settings))
    classifier = BioClassifier(cfg, onnx_file, device='cpu')
    result = _time_inference(
        lambda images: classifier.predict_scores(images, settings.batch_size,
                                                 settings.num_workers),
        settings, paths)
    return dict(result, runtime=f"ONNX Runtime {classifier.model.metadata['precision']}")
