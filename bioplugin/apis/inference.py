"""Predict with a trained classifier: image files, folders or numpy arrays in, a table out."""
import copy
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader

from mmpretrain.registry import MODELS

from ..deploy.onnx_classifier import OnnxClassifier
from ..deploy.runtimes import is_onnx_file
from ..engine.checkpoint_io import resolve_checkpoint
from ..engine.checkpoint_io import trust_checkpoint as trust_checkpoint_file
from ..engine.inference_layout import check_layout
from ..engine.precision import autocast, device_type, prepare_for_inference, resolve_precision
from ..errors import ConfigError, DatasetError
from ..evaluation.abundance import abundance_table, read_group_file, val_reference
from ..evaluation.model_facts import ModelFacts
from ..evaluation.quantification import DEFAULT_METHOD, LEVEL
from ..evaluation.post_processor import (PostProcessor, sample_outputs, stack_outputs,
                                         unknown_flags)
from ..evaluation.prediction_table import image_names
from ..evaluation.taxonomy import CONFIDENT
from ..models import load_trained_model
from .config import build_split_dataset, load_config
from .image_inputs import (ImageInput, ImageListDataset, list_images, load_errors,
                           single_threaded_opencv)
from .tta import tta_model, tta_pipeline


class BioClassifier:
    """A trained classifier, loaded once from a config and a checkpoint::

        from bioplugin.apis import BioClassifier
        classifier = BioClassifier('configs/bio_resnext.py', 'work_dirs/bio_resnext/best.pth')
        table = classifier.predict('data/bio/test', topk=3)   # folder, paths or arrays
        print(table.head())

    ``checkpoint`` may be a work dir: its best checkpoint is used. ``tta=True`` averages the
    class probabilities over the config's ``tta_pipeline`` views (by default the image and its
    horizontal mirror) with MMPretrain's ``AverageClsScoreTTA``. ``precision`` overrides the
    config's (``'auto'``: bfloat16 + channels_last on CPUs with native bfloat16 and on GPUs);
    ``inference_layout`` the config's ``inference_layout`` (``'auto'``, ``'channels_last'``,
    ``'nchw'``: the convolutions' memory layout; with ``'auto'``, float32 on a CPU runs the
    layout a short probe on the first batch finds faster, cached per machine, see
    :mod:`bioplugin.engine.inference_layout`).
    Checkpoints are unpickled with ``weights_only=True``; ``trust_checkpoint=True`` lifts that
    for a file you trust. ``checkpoint`` may be an exported ``.onnx`` file
    (``tools/deploy/export_onnx.py``), run by ``backend`` (``'onnxruntime'`` or
    ``'openvino'``), with the facts of its metadata.

    Images go through the config's test pipeline in batches of the config's test batch size
    (as ``tools/test.py`` batches them, so both give the same numbers under bfloat16 too),
    and the logits through the same
    :class:`~bioplugin.evaluation.post_processor.PostProcessor` as the CSV of
    ``tools/test.py``: scores carry the checkpoint's calibration temperature
    (``tools/analysis/calibrate.py``) unless ``raw_scores=True`` (``classifier.temperature``
    says which applies), then come the ``decision``, with an unknown threshold
    (``classifier.unknown_threshold``) the ``unknown`` / ``unknown_score`` columns.
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
                 raw_scores: bool = False,
                 inference_layout: Optional[str] = None):
        self.cfg = (config if isinstance(config, Config)
                    else load_config(config, cfg_options, model_file=checkpoint))
        # nested transforms (TestTimeAug) are built from the default scope's registry
        init_default_scope(self.cfg.get('default_scope', 'mmpretrain'))
        self.device = torch.device(device or device_type())
        self.checkpoint_path = checkpoint = resolve_checkpoint(checkpoint)
        if trust_checkpoint:
            trust_checkpoint_file(checkpoint)
        self.tta = tta
        self.raw_scores = raw_scores
        if is_onnx_file(checkpoint):
            model = OnnxClassifier(checkpoint, backend=backend)
            self.facts = model.facts
            self.precision = 'fp32'  # the runtime's own arithmetic, no autocast
            self.inference_layout = 'nchw'  # the runtime's own
        else:
            model, classes = load_trained_model(self.cfg, checkpoint)
            classes = classes or self._config_classes()
            if len(classes) != self.cfg.model.head.num_classes:
                raise ConfigError(
                    f'{checkpoint!r} names {len(classes)} classes but its head has '
                    f'{self.cfg.model.head.num_classes} outputs.')
            self.facts = ModelFacts.from_checkpoint(checkpoint, classes)
            # the config's precision ('auto': bfloat16 weights where the hardware has them)
            self.precision = resolve_precision(precision or self.cfg.get('precision', 'auto'),
                                               self.device.type)
            self.inference_layout = check_layout(
                inference_layout or self.cfg.get('inference_layout', 'auto'))
            model = prepare_for_inference(model, self.precision, self.device.type,
                                          self.inference_layout)
        self.classes = self.facts.classes
        self._post_processor = self.post_processor()
        if tta:
            model = MODELS.build(tta_model(self.cfg, model))
        self.model = model.to(self.device).eval()
        self.test_pipeline_cfg = copy.deepcopy(self.cfg.test_dataloader.dataset.pipeline)
        self.pipeline_cfg = tta_pipeline(self.cfg) if tta else self.test_pipeline_cfg
        self.batch_size = int(self.cfg.test_dataloader.get('batch_size', 1))

    @property
    def temperature(self) -> Optional[float]:
        """The calibration temperature the scores carry (None: the model's own scores)."""
        return self._post_processor.temperature

    @property
    def review(self) -> Optional[dict]:
        """The thresholds of the ``decision`` column (None without calibration)."""
        return self._post_processor.facts.review

    @property
    def unknown_threshold(self) -> Optional[float]:
        return self._post_processor.unknown_threshold

    def post_processor(self, **table_options) -> PostProcessor:
        """The :class:`~bioplugin.evaluation.post_processor.PostProcessor` of this model, with
        the table options of :meth:`predict`."""
        return PostProcessor(self.facts, raw_scores=self.raw_scores, **table_options)

    def _config_classes(self) -> tuple:
        return tuple(build_split_dataset(self.cfg, 'train').metainfo['classes'])

    @torch.no_grad()
    def outputs(self, images: Sequence[ImageInput], batch_size: Optional[int] = None,
                num_workers: int = 0, progress: bool = False) -> tuple:
        """``(outputs, errors)``: the model's ``logits``, head ``features`` and (ONNX)
        ``unknown_scores`` of ``images`` in input order (see
        :func:`~bioplugin.evaluation.post_processor.stack_outputs`), and ``{index: reason}``
        for the images that could not be read. ``batch_size`` defaults to the config's test
        batch size."""
        loader = DataLoader(ImageListDataset(images, self.pipeline_cfg),
                            batch_size=batch_size or self.batch_size, num_workers=num_workers,
                            collate_fn=default_collate, worker_init_fn=single_threaded_opencv,
                            pin_memory=self.device.type == 'cuda')
        bar = ProgressBar(len(images)) if progress else None
        outputs, errors = [], {}
        for batch in loader:
            with autocast(self.precision, self.device.type):
                samples = self.model.test_step(batch)
            for sample, error in zip(samples, load_errors(batch)):
                if error:
                    errors[len(outputs)] = error
                outputs.append(sample_outputs(sample))
            if bar:
                bar.update(len(samples))
        if bar:
            print()
        outputs = stack_outputs(outputs, len(self.classes))
        outputs['logits'][list(errors)] = np.nan  # a placeholder's logits mean nothing
        return outputs, errors

    def predict_scores(self, images: Sequence[ImageInput], batch_size: Optional[int] = None,
                       num_workers: int = 0, progress: bool = False) -> np.ndarray:
        """Class probabilities, ``(len(images), len(classes))``, in input order; the row of
        an image that cannot be read is NaN."""
        outputs, _ = self.outputs(images, batch_size, num_workers, progress)
        return self._post_processor.scores(outputs['logits'])

    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], topk: int = 1,
                batch_size: Optional[int] = None, num_workers: int = 0, progress: bool = False,
                class_names: Optional[dict] = None, taxonomy: Optional[str] = None,
                confident_threshold: float = CONFIDENT,
                unknown_label: Optional[str] = None, adapt_priors: bool = False,
                groups: Union[str, Sequence[str], None] = None) -> pd.DataFrame:
        """Predict a folder, an image path, an array, or a list of paths / arrays.

        Returns one row per image (input order; folders in natural file order), the table of
        ``tools/test.py --csv``: ``image_name`` (file stem, or ``array_<i>``), ``pred_label``
        (class folder name), ``score`` and, for ``topk > 1``, the next best labels and
        scores. An image that cannot be read keeps its row, with an empty label and a
        ``status`` column saying why. ``class_names`` maps labels to readable names;
        ``taxonomy`` (a CSV) adds the rolled-up ranks and ``confident_rank`` (see
        ``tools/test.py --taxonomy``); with an open-set threshold ``unknown`` /
        ``unknown_score`` columns follow, ``unknown_label`` as the ``pred_label`` of unknown
        images; with calibration thresholds a ``decision`` column. ``adapt_priors=True``
        gives each image's scores under the class mix its sample is estimated to hold (EM;
        ``groups``: a group per image, or an ``image,group`` CSV; default: all images are one
        sample), the estimated priors in ``table.attrs['priors']``.
        """
        post_processor = self.post_processor(
            topk=topk, class_names=class_names, taxonomy=taxonomy,
            confident_threshold=confident_threshold, unknown_label=unknown_label,
            adapt_priors=adapt_priors)
        images, names = self._images(inputs)
        groups, _ = self._groups(groups, images)
        outputs, errors = self.outputs(images, batch_size, num_workers, progress)
        return post_processor.table(names, outputs['logits'], outputs['features'],
                                    outputs['unknown_scores'], errors, groups)

    def abundance(self, inputs: Union[ImageInput, Sequence[ImageInput]],
                  groups: Union[str, Sequence[str], None] = None,
                  method: str = DEFAULT_METHOD, bootstrap: int = 1000, seed: int = 0,
                  level: float = LEVEL, batch_size: Optional[int] = None,
                  num_workers: int = 0, progress: bool = False) -> pd.DataFrame:
        """How many of each class ``inputs`` (a folder, paths or arrays) hold: one row per
        class with ``count``, ``proportion`` and its ``level`` interval (``bootstrap``
        rounds over these and the val images, ``seed``), then the images flagged unknown
        and the unreadable ones, counted apart (see
        :mod:`~bioplugin.evaluation.abundance`). ``groups`` (a group per image, or an
        ``image,group`` CSV) estimates each group apart; ``method`` is one of ``cc``,
        ``pcc``, ``acc``, ``pacc``, ``em`` or ``all``. Warnings are in
        ``table.attrs['warnings']``. The images' scores are those of :meth:`predict`."""
        post_processor = self._post_processor
        val = val_reference(self.facts.val_set(), post_processor.scores)
        images, _ = self._images(inputs)
        groups, warnings = self._groups(groups, images)
        outputs, errors = self.outputs(images, batch_size, num_workers, progress)
        logits = outputs['logits']
        unknown = post_processor.unknown_scores(logits, outputs['features'],
                                                outputs['unknown_scores'])
        flagged = (None if unknown is None
                   else unknown_flags(unknown, post_processor.unknown_threshold))
        table = abundance_table(post_processor.scores(logits), flagged, val, self.classes,
                                groups, method, bootstrap, seed, level)
        table.attrs['warnings'] = warnings + table.attrs['warnings']
        return table

    @staticmethod
    def _images(inputs) -> tuple:
        """The images of ``inputs`` (a folder, a path, an array or a list of them) and
        their names."""
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
        return images, names

    @staticmethod
    def _groups(groups, images) -> tuple:
        """A group per image from a group file or a sequence; ``(groups, warnings)``."""
        if groups is None:
            return None, []
        if isinstance(groups, str):
            paths = [image if isinstance(image, str) else f'array_{i}'
                     for i, image in enumerate(images)]
            return read_group_file(groups, paths)
        groups = [str(group) for group in groups]
        if len(groups) != len(images):
            raise DatasetError(f'{len(groups)} groups for {len(images)} images.')
        return groups, []
