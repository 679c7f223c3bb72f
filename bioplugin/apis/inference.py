"""Predict with a trained classifier: image files, folders or numpy arrays in, a table out."""
import copy
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from mmpretrain.registry import MODELS

from ..engine.checkpoint_io import (checkpoint_classes, load_weights, read_checkpoint,
                                    resolve_checkpoint)
from ..engine.checkpoint_io import trust_checkpoint as trust_checkpoint_file
from ..engine.precision import autocast, device_type, prepare_for_inference, resolve_precision
from ..deploy.onnx_classifier import OnnxClassifier
from ..deploy.runtimes import is_onnx_file
from ..errors import ConfigError, DatasetError
from ..evaluation.calibration import apply_temperature, read_calibration
from ..evaluation.open_set import OpenSetDetector, add_unknown_columns, unknown_scores
from ..evaluation.review import decisions
from ..evaluation.taxonomy import CONFIDENT, add_rank_columns, read_taxonomy
from ..evaluation.prediction_table import image_names, prediction_frame
from ..models import build_model
from .config import build_split_dataset, load_config
from .image_inputs import (ImageInput, ImageListDataset, list_images, load_errors,
                           single_threaded_opencv)
from .tta import tta_model, tta_pipeline


def load_trained_model(cfg: Config, checkpoint: str) -> Tuple[torch.nn.Module, Optional[tuple]]:
    """The config's classifier with the weights of ``checkpoint`` (checked tensor by tensor)
    and the class names the checkpoint records (None if it records none). The file is
    mapped, not read: its tensors become the model's, and a training checkpoint's optimizer
    state is never loaded."""
    model = build_model(cfg, pretrained=False)
    state = read_checkpoint(checkpoint, mmap=True)
    load_weights(model, state, checkpoint, assign=True)
    return model, checkpoint_classes(state)


class BioClassifier:
    """A trained classifier, loaded once from a config and a checkpoint::

        from bioplugin.apis import BioClassifier
        classifier = BioClassifier('configs/bio_resnext.py', 'work_dirs/bio_resnext/best.pth')
        table = classifier.predict('data/bio/test', topk=3)   # folder, paths or arrays
        print(table.head())

    ``checkpoint`` may be a work dir: its best checkpoint is used. ``tta=True`` averages the
    class probabilities over the config's ``tta_pipeline`` views (by default the image and its
    horizontal mirror) with MMPretrain's ``AverageClsScoreTTA``. ``precision`` overrides the
    config's (``'auto'``: bfloat16 + channels_last on CPUs with native bfloat16 and on GPUs).
    Checkpoints are unpickled with ``weights_only=True``; ``trust_checkpoint=True`` lifts that
    for a file you trust. ``checkpoint`` may be an exported ``.onnx`` file
    (``tools/deploy/export_onnx.py``), run by ``backend`` (``'onnxruntime'`` or
    ``'openvino'``), with the class names of its metadata. Scores carry the checkpoint's
    calibration temperature (``tools/analysis/calibrate.py``; the ONNX file's own) unless
    ``raw_scores=True``; ``classifier.temperature`` says which was applied. With the
    checkpoint's open-set threshold (``classifier.unknown_threshold``) the table gains
    ``unknown`` / ``unknown_score`` columns (see ``tools/test.py --unknown-label``).
    """

    def __init__(self,
                 config: Union[str, Config],
                 checkpoint: str,
                 device: Optional[str] = None,
                 tta: bool = False,
                 cfg_options: Optional[dict] = None,
                 trust_checkpoint: bool = False,
                 precision: Optional[str] = None,
                 backend: str = 'onnxruntime',
                 raw_scores: bool = False):
        self.cfg = config if isinstance(config, Config) else load_config(config, cfg_options)
        # nested transforms (TestTimeAug) are built from the default scope's registry
        init_default_scope(self.cfg.get('default_scope', 'mmpretrain'))
        self.device = torch.device(device or device_type())
        self.checkpoint_path = checkpoint = resolve_checkpoint(checkpoint)
        if trust_checkpoint:
            trust_checkpoint_file(checkpoint)
        self.tta = tta
        self.temperature = None  # applied here; an ONNX model applies its own
        self.review = None  # thresholds of the decision column
        self.open_set = None  # the unknown score of a PyTorch model; an ONNX one has its own
        if is_onnx_file(checkpoint):
            model = OnnxClassifier(checkpoint, backend=backend, raw_scores=raw_scores)
            self.classes = model.classes
            self.review = model.review
            self.unknown_threshold = model.unknown_threshold
            self.precision = 'fp32'  # the runtime's own arithmetic, no autocast
        else:
            model, classes = load_trained_model(self.cfg, checkpoint)
            self.classes = classes or self._config_classes()
            if len(self.classes) != self.cfg.model.head.num_classes:
                raise ConfigError(
                    f'{checkpoint!r} names {len(self.classes)} classes but its head has '
                    f'{self.cfg.model.head.num_classes} outputs.')
            # the config's precision ('auto': bfloat16 weights where the hardware has them)
            self.precision = resolve_precision(precision or self.cfg.get('precision', 'auto'),
                                               self.device.type)
            model = prepare_for_inference(model, self.precision, self.device.type)
            calibration = read_calibration(checkpoint)
            if calibration and not raw_scores:
                self.temperature, self.review = (calibration['temperature'],
                                                 calibration.get('review'))
            self.open_set = OpenSetDetector.from_checkpoint(checkpoint, calibration)
            self.unknown_threshold = self.open_set.threshold if self.open_set else None
        if tta:
            model = MODELS.build(tta_model(self.cfg, model))
        self.model = model.to(self.device).eval()
        self.test_pipeline_cfg = copy.deepcopy(self.cfg.test_dataloader.dataset.pipeline)
        self.pipeline_cfg = tta_pipeline(self.cfg) if tta else self.test_pipeline_cfg

    def _config_classes(self) -> tuple:
        return tuple(build_split_dataset(self.cfg, 'train').metainfo['classes'])

    def predict_scores(self, images: Sequence[ImageInput], batch_size: int = 32,
                       num_workers: int = 0, progress: bool = False) -> np.ndarray:
        """Class probabilities, ``(len(images), len(classes))``, in input order; the row of
        an image that cannot be read is NaN."""
        return self._scores(images, batch_size, num_workers, progress)[0]

    @torch.no_grad()
    def _scores(self, images, batch_size, num_workers, progress):
        """``(scores, {index: reason}, unknown scores or None)`` for ``images``: see
        :meth:`predict_scores`."""
        loader = DataLoader(ImageListDataset(images, self.pipeline_cfg), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=default_collate,
                            worker_init_fn=single_threaded_opencv,
                            pin_memory=self.device.type == 'cuda')
        bar = ProgressBar(len(images)) if progress else None
        scores, unknown, errors, done = [], [], {}, 0
        for batch in loader:
            with autocast(self.precision, self.device.type):
                samples = self.model.test_step(batch)
            batch_scores = torch.stack([s.pred_score for s in samples]).float().cpu()
            unknown.append(self._unknown_scores(samples))
            if self.temperature:
                batch_scores = torch.from_numpy(apply_temperature(batch_scores.numpy(),
                                                                  self.temperature))
            for i, error in enumerate(load_errors(batch)):
                if error:
                    batch_scores[i] = float('nan')
                    errors[done + i] = error
            scores.append(batch_scores)
            done += len(samples)
            if bar:
                bar.update(len(samples))
        if bar:
            print()
        table = torch.cat(scores).numpy() if scores else np.zeros((0, len(self.classes)))
        unknown = (np.concatenate(unknown) if unknown and all(u is not None for u in unknown)
                   else None)
        if unknown is not None:
            unknown[list(errors)] = np.nan
        return table, errors, unknown

    def _unknown_scores(self, samples) -> Optional[np.ndarray]:
        """The unknown score of each sample: from its logits and head feature, or as an ONNX
        graph computed it; None without an open-set threshold."""
        if self.unknown_threshold is None:
            return None

        def field(name):
            values = [sample.get(name) for sample in samples]
            return (None if any(value is None for value in values)
                    else torch.stack(values).float().cpu().numpy())

        return unknown_scores(self.open_set, field('pred_logits'), field('pred_feature'),
                              field('pred_unknown_score'))

    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], topk: int = 1,
                batch_size: int = 32, num_workers: int = 0, progress: bool = False,
                class_names: Optional[dict] = None, taxonomy: Optional[str] = None,
                confident_threshold: float = CONFIDENT,
                unknown_label: Optional[str] = None) -> pd.DataFrame:
        """Predict a folder, an image path, an array, or a list of paths / arrays.

        Returns one row per image (input order; folders in natural file order) with
        ``image_name`` (file stem, or ``array_<i>``), ``pred_label`` (class folder name),
        ``score`` and, for ``topk > 1``, the next best labels and scores. An image that
        cannot be read keeps its row, with an empty label and a ``status`` column saying why.
        With calibration thresholds a ``decision`` column follows; ``taxonomy`` (a CSV) adds
        the rolled-up ranks and ``confident_rank`` (see ``tools/test.py --taxonomy``); with an
        open-set threshold ``unknown`` / ``unknown_score`` columns, ``unknown_label`` as the
        ``pred_label`` of unknown images.
        """
        if isinstance(inputs, str):
            images = list_images(inputs) if osp.isdir(inputs) else [inputs]
        elif isinstance(inputs, np.ndarray) and inputs.ndim in (2, 3):
            images = [inputs]
        else:
            images = list(inputs)
        for image in images:
            if isinstance(image, str) and not osp.isfile(image):
                raise DatasetError(f'Image {image!r} does not exist.')
        names = image_names([image if isinstance(image, str) else f'array_{i}'
                             for i, image in enumerate(images)])
        scores, errors, unknown = self._scores(images, batch_size, num_workers, progress)
        frame = prediction_frame(names, scores, self.classes, topk=topk,
                                 class_names=class_names, errors=errors)
        if unknown is not None:
            add_unknown_columns(frame, unknown, self.unknown_threshold, unknown_label)
        if taxonomy:
            add_rank_columns(frame, scores, read_taxonomy(taxonomy, self.classes),
                             confident_threshold)
        decision = decisions(frame, self.review)
        if decision is not None:
            frame['decision'] = decision
        return frame
