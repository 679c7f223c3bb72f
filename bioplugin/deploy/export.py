"""Export a trained classifier to ONNX, check it against PyTorch, and quantize it to int8.

``tools/deploy/export_onnx.py`` is the command line of :func:`export_onnx`; the file runs in
``tools/test.py CONFIG model.onnx``, ``BioClassifier(config, 'model.onnx')`` and in any
program with ONNX Runtime (see :mod:`bioplugin.deploy.metadata`).
"""
import os
import os.path as osp
import time
import warnings
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from torch import nn

from mmpretrain.registry import DATASETS

from ..datasets.loader_options import SPLITS
from ..engine.checkpoint_io import resolve_checkpoint
from ..engine.checkpoint_io import trust_checkpoint as trust_checkpoint_file
from ..errors import CheckpointError, DatasetError
from ..evaluation.model_facts import ModelFacts, copy_val_set
from ..fileio import output_errors
from ..models import load_trained_model
from .metadata import (INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, UNKNOWN_OUTPUT, build_metadata,
                       metadata_json)
from .quantization import lacks_vnni, quantize_checked
from .runtimes import open_runtime


def logits_and_feature(classifier: nn.Module, inputs: torch.Tensor) -> tuple:
    """``(logits, head feature)`` of normalised ``inputs`` (the head's ``pre_logits``)."""
    feats = classifier.extract_feat(inputs)
    head = classifier.head
    if hasattr(head, 'logits_and_feature'):
        return head.logits_and_feature(feats)
    return head(feats), head.pre_logits(feats)


class ExportableClassifier(nn.Module):
    """RGB ``uint8`` images ``(N, 3, H, W)`` → ``(logits, scores, features[,
    unknown_score])``: the config's data preprocessor's normalisation (and channel order),
    then the classifier; ``scores`` are ``softmax(logits / temperature)``, ``features`` the
    head's; ``unknown_score`` (the checkpoint's
    :class:`~bioplugin.evaluation.unknown_score.UnknownScore`, training features inside) is
    added when one is given."""

    def __init__(self, classifier: nn.Module, temperature: Optional[float] = None,
                 unknown_score: Optional[nn.Module] = None):
        super().__init__()
        preprocessor = classifier.data_preprocessor
        self.classifier = classifier
        # the pipeline gives BGR; a model trained without to_rgb saw BGR, so flip ours back
        self.flip_to_bgr = not preprocessor.to_rgb
        # MMPretrain's preprocessor has mean / std buffers only when it normalises
        mean, std = getattr(preprocessor, 'mean', None), getattr(preprocessor, 'std', None)
        self.register_buffer('mean', mean.clone() if mean is not None else torch.zeros(3, 1, 1))
        self.register_buffer('std', std.clone() if std is not None else torch.ones(3, 1, 1))
        self.temperature = float(temperature or 1.0)
        self.unknown_score = unknown_score
        self.output_names = OUTPUT_NAMES + ((UNKNOWN_OUTPUT, ) if unknown_score else ())

    def forward(self, image: torch.Tensor):
        x = image.float()
        if self.flip_to_bgr:
            x = x.flip(1)
        logits, features = logits_and_feature(self.classifier, (x - self.mean) / self.std)
        outputs = (logits, torch.softmax(logits / self.temperature, dim=1), features)
        if self.unknown_score is not None:
            outputs += (self.unknown_score(logits, features), )
        return outputs


def split_samples(cfg: Config, split: str, count: int, classes: Sequence[str],
                  seed: int = 0) -> list:
    """Up to ``count`` images of ``split`` picked at random with ``seed`` (the same ones on
    every run), through the test pipeline; unreadable files are replaced by readable ones."""
    dataset_cfg = dict(cfg[SPLITS[split]].dataset,
                       pipeline=cfg.test_dataloader.dataset.pipeline, bad_image_policy='skip')
    if dataset_cfg.get('labeled', True):
        dataset_cfg.pop('classes_from', None)
        dataset_cfg['classes'] = list(classes)
    dataset = DATASETS.build(dataset_cfg)
    picked = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count])
    return [dataset[int(index)] for index in picked]


def first_split_samples(cfg: Config, splits: Sequence[str], count: int,
                        classes) -> tuple:
    """``(split, samples)``: :func:`split_samples` of the first of ``splits`` whose folder
    holds images, ``(None, [])`` when none does."""
    for split in splits:
        try:
            samples = split_samples(cfg, split, count, classes)
        except (DatasetError, FileNotFoundError, KeyError):
            continue
        if samples:
            return split, samples
    return None, []


def batches_of(samples: list, batch_size: int) -> Iterator[dict]:
    for start in range(0, len(samples), batch_size):
        yield default_collate(samples[start:start + batch_size])


def rgb_uint8(batch: dict) -> np.ndarray:
    """The pipeline's BGR uint8 images of a collated batch as the ONNX input."""
    inputs = batch['inputs']
    inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
    return np.ascontiguousarray(inputs.flip(1).numpy())


def labels_of(batch: dict) -> Optional[List[int]]:
    samples = batch['data_samples']
    if not all('gt_label' in sample for sample in samples):
        return None
    return [int(sample.gt_label[0]) for sample in samples]


@torch.no_grad()
def pytorch_logits(model: nn.Module, batch: dict) -> np.ndarray:
    """Logits of the config's own path: data preprocessor, then the model, float32."""
    data = model.data_preprocessor(batch, False)
    return model(data['inputs'], mode='tensor').float().numpy()


def compare(reference: Callable[[dict], np.ndarray], candidate: Callable[[dict], np.ndarray],
            samples: list, batch_size: int) -> dict:
    """Max absolute logit difference, top-1 agreement, and top-1 accuracy of both on labeled
    samples."""
    diffs, same, right_ref, right_cand, labeled, count = [], 0, 0, 0, True, 0
    for batch in batches_of(samples, batch_size):
        ref, cand = reference(batch), candidate(batch)
        diffs.append(float(np.abs(ref - cand).max()))
        same += int((ref.argmax(1) == cand.argmax(1)).sum())
        labels = labels_of(batch)
        labeled = labeled and labels is not None
        if labeled:
            right_ref += int((ref.argmax(1) == np.array(labels)).sum())
            right_cand += int((cand.argmax(1) == np.array(labels)).sum())
        count += len(ref)
    result = dict(images=count, max_abs_diff=max(diffs), top1_agreement=same / count)
    if labeled:
        result.update(reference_top1=right_ref / count, candidate_top1=right_cand / count)
    return result


def _write_metadata(path: str, metadata: dict) -> None:
    import onnx
    model = onnx.load(path)
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json(metadata)
    model.producer_name = 'bioplugin'
    model.doc_string = (f"{len(metadata['classes'])}-class specimen classifier; input "
                        f"{INPUT_NAME}: RGB uint8 (N, 3, {metadata['input']['height']}, "
                        f"{metadata['input']['width']}); outputs "
                        + ', '.join(metadata['outputs']))
    onnx.save(model, path)


def export_fp32(wrapper: ExportableClassifier, out_file: str, height: int, width: int,
                opset: Optional[int]) -> None:
    """``torch.onnx.export`` (torch.export based) with a dynamic batch, one self-contained
    file (the unknown score's training features included)."""
    example = torch.zeros(2, 3, height, width, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # the exporter's progress and deprecation notes
        torch.onnx.export(
            wrapper, (example, ), out_file, input_names=[INPUT_NAME],
            output_names=list(wrapper.output_names), opset_version=opset, dynamo=True,
            dynamic_shapes={'image': {0: torch.export.Dim('batch', min=1)}},
            external_data=False, verbose=False)


def export_onnx(cfg: Config, checkpoint: str, out_file: str, opset: Optional[int] = None,
                temperature: Optional[float] = None, check_images: int = 100,
                tolerance: float = 1e-3, int8: bool = False, calibration_images: int = 300,
                min_int8_agreement: float = 0.95, reduce_range: Optional[bool] = None,
                calibration_method: str = 'minmax', batch_size: int = 8,
                trust_checkpoint: bool = False, raw_scores: bool = False,
                log: Callable[[str], None] = print) -> dict:
    """Export ``checkpoint`` to ``out_file`` and check it on up to ``check_images`` images of
    the val split (else train) against PyTorch; with ``int8`` also write
    ``<out_file stem>_int8.onnx`` calibrated on ``calibration_images`` training images and
    check it against the fp32 file. ``temperature`` (default: the checkpoint's calibration,
    none with ``raw_scores``) goes into the ``scores`` output and the metadata; the
    checkpoint's open-set threshold and training features make an ``unknown_score`` output.
    Returns the report: files, the checks, and ``passed`` (logits within ``tolerance``; int8
    top-1 agreement at least ``min_int8_agreement``).
    ``reduce_range`` (7-bit int8 weights) defaults to this CPU's need: on where it lacks VNNI,
    as the file's check runs here (a file for such CPUs needs it wherever it is made)."""
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    checkpoint = resolve_checkpoint(checkpoint)
    if trust_checkpoint:
        trust_checkpoint_file(checkpoint)
    model, classes = load_trained_model(cfg, checkpoint)
    model.eval()
    if not classes:
        raise CheckpointError(f'{checkpoint!r} records no class names (meta.dataset_meta.'
                              'classes); export a checkpoint written by tools/train.py.')
    facts = ModelFacts.from_checkpoint(checkpoint, classes)
    review, detector = None, facts.detector
    if not raw_scores and temperature is None:  # the stored thresholds hold for its temperature
        temperature, review = facts.temperature, facts.review
    check_split, samples = first_split_samples(cfg, ('val', 'train'), check_images, classes)
    if check_split is None:
        raise DatasetError(f'No val or train images under {cfg.get("data_root")!r} to check '
                           'the export on; pass --data-root DATA_ROOT.')
    height, width = samples[0]['inputs'].shape[1:]
    out_file = osp.abspath(out_file)
    os.makedirs(osp.dirname(out_file), exist_ok=True)
    report = dict(onnx_file=out_file, check_split=check_split, classes=list(classes))

    start = time.perf_counter()
    partial = out_file + '.partial'
    try:
        with output_errors(out_file):
            wrapper = ExportableClassifier(model, temperature,
                                           detector.module if detector else None).eval()
            export_fp32(wrapper, partial, height, width, opset)
            pipeline = cfg.test_dataloader.dataset.pipeline
            metadata = build_metadata(
                classes, height, width, pipeline, mean=wrapper.mean.flatten(),
                std=wrapper.std.flatten(), temperature=temperature,
                source=dict(config=cfg.filename, checkpoint=osp.abspath(checkpoint)),
                review=review, outputs=wrapper.output_names,
                open_set=detector.record if detector else None)
            _write_metadata(partial, metadata)
            os.replace(partial, out_file)
            report['val_posteriors'] = copy_val_set(checkpoint, out_file)
    finally:
        if osp.exists(partial):  # an export that failed half-way leaves nothing behind
            os.remove(partial)
    log(f'Exported {out_file} (fp32, {osp.getsize(out_file) / 2**20:.1f} MiB, input '
        f'{INPUT_NAME}: RGB uint8 N x 3 x {height} x {width}) in '
        f'{time.perf_counter() - start:.0f} s')
    if report['val_posteriors']:
        log(f"Val posteriors for abundance estimates: {report['val_posteriors']}")

    fp32 = open_runtime(out_file)
    check = compare(lambda batch: pytorch_logits(model, batch),
                    lambda batch: fp32.run(rgb_uint8(batch)), samples, batch_size)
    check['passed'] = check['max_abs_diff'] <= tolerance
    report['fp32_check'] = check
    log(f"ONNX Runtime vs PyTorch on {check['images']} {check_split} images: max |logit "
        f"difference| {check['max_abs_diff']:.2e} (tolerance {tolerance:g}), top-1 agreement "
        f"{check['top1_agreement']:.1%}" + ('' if check['passed'] else ' — FAIL'))
    passed = check['passed']

    if int8:
        if reduce_range is None:
            reduce_range = lacks_vnni()
        stem, _ = osp.splitext(out_file)
        int8_file = report['int8_file'] = f'{stem}_int8.onnx'
        calibration = int8_calibration_samples(cfg, classes, calibration_images)
        quantization = dict(format='QDQ', weights='int8 per channel', activations='uint8',
                            calibration=f'{calibration_method} on {len(calibration)} train '
                            'images', reduce_range=reduce_range)

        def check_int8(path: str) -> dict:
            _write_metadata(path, dict(metadata, precision='int8', quantization=quantization))
            quantized = open_runtime(path)
            return compare(lambda batch: fp32.run(rgb_uint8(batch)),
                           lambda batch: quantized.run(rgb_uint8(batch)), samples, batch_size)

        start = time.perf_counter()
        with output_errors(int8_file):
            check8 = quantize_checked(
                out_file, int8_file,
                [rgb_uint8(batch) for batch in batches_of(calibration, batch_size)],
                check_int8, min_int8_agreement, log=log, method=calibration_method,
                reduce_range=reduce_range)
            quantization.update(float_leading_convs=check8['float_leading_convs'],
                                top1_agreement=check8['top1_agreement'],
                                check_images=check8['images'], tried=check8['tried'])
            _write_metadata(int8_file, dict(metadata, precision='int8',
                                            quantization=quantization))
        report['int8_check'] = check8
        kept = check8['float_leading_convs']
        log(f'Quantized to {int8_file} (int8, {osp.getsize(int8_file) / 2**20:.1f} MiB, '
            f"{'7' if reduce_range else '8'}-bit weights"
            + (f', the first {kept} convolutions in float' if kept else '')
            + f') on {len(calibration)} training images in {time.perf_counter() - start:.0f} s')
        tried = ' / '.join(str(count) for count, _ in check8['tried'])
        accuracy = (f"; {check_split} top-1 fp32 {check8['reference_top1']:.1%}, int8 "
                    f"{check8['candidate_top1']:.1%}" if 'reference_top1' in check8 else '')
        log(f"int8 vs fp32 on {check8['images']} {check_split} images: top-1 agreement "
            f"{check8['top1_agreement']:.1%} (minimum {min_int8_agreement:.0%}){accuracy}"
            + ('' if check8['passed'] else f' — FAIL: {tried} leading convolutions in float '
               'tried, none meets it; kept the best'))
        passed = passed and check8['passed']
    report['passed'] = passed
    return report


def int8_calibration_samples(cfg: Config, classes, count: int) -> list:
    """``count`` training images (seeded pick) to calibrate int8 ranges on; one sentence
    when there are none."""
    root = cfg.train_dataloader.dataset.get('data_root') or cfg.get('data_root')
    try:
        samples = split_samples(cfg, 'train', count, classes, seed=1)
    except (DatasetError, FileNotFoundError) as error:
        raise DatasetError(f'--int8 calibrates on training images, but {root!r} has none '
                           f'usable ({error}); pass --data-root with a train/ folder.') from None
    if not samples:
        raise DatasetError(f'--int8 calibrates on training images, but {root!r}/train has '
                           'none; pass --data-root with a train/ folder.')
    return samples
