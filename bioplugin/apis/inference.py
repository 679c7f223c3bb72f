"""Predict with a trained classifier: image files, folders or numpy arrays in, a table out."""
import copy
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

import cv2
import numpy as np
import pandas as pd
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.dist import get_dist_info, is_main_process
from mmengine.logging import print_log
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar
from torch.utils.data import DataLoader, Dataset

from mmpretrain.datasets import remove_transform
from mmpretrain.registry import MODELS, TRANSFORMS

from ..datasets.bio_dataset import scan_images
from ..datasets.image_io import BadImageError, load_image
from ..engine.checkpoint_io import (checkpoint_classes, load_weights, read_checkpoint,
                                    resolve_checkpoint)
from ..engine.checkpoint_io import trust_checkpoint as trust_checkpoint_file
from ..engine.precision import autocast, prepare_for_inference, resolve_precision
from ..errors import ConfigError, DatasetError
from ..evaluation.prediction_table import image_names, prediction_frame
from .config import build_split_dataset, load_config
from .distributed import map_sharded

ImageInput = Union[str, np.ndarray]


def default_device() -> str:
    """This process's GPU when there is one (``cuda:LOCAL_RANK`` in a distributed run)."""
    if not torch.cuda.is_available():
        return 'cpu'
    _, world = get_dist_info()
    return f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if world > 1 else 'cuda'


def tta_pipeline(cfg: Config) -> list:
    """The config's ``tta_pipeline``, or the test pipeline seen as is and mirrored."""
    if cfg.get('tta_pipeline'):
        return copy.deepcopy(cfg.tta_pipeline)
    test_pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    pack = test_pipeline.pop()
    return test_pipeline + [dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=0.),
                     dict(type='RandomFlip', prob=1., direction='horizontal')],
                    [pack]])]


class ImageListDataset(Dataset):
    """Image paths and arrays through the test pipeline, for a DataLoader.

    A file that cannot be read becomes a black placeholder whose data sample carries
    ``load_error`` (the reason), so every input keeps its place in the output.
    """

    def __init__(self, images: Sequence[ImageInput], pipeline_cfg: list):
        self.images = images
        self.file_pipeline = Compose([TRANSFORMS.build(t) for t in pipeline_cfg])
        self.array_pipeline = Compose(
            [TRANSFORMS.build(t) for t in remove_transform(pipeline_cfg, 'BioLoadImage')])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        if not isinstance(image, str):
            return self._from_array(as_bgr_uint8(image))
        try:
            return self.file_pipeline(dict(img_path=image))
        except BadImageError as error:
            print_log(f'Unreadable image, no prediction: {error}', logger='current',
                      level=logging.WARNING)
            data = self._from_array(np.zeros((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), np.uint8))
            samples = data['data_samples']  # a list of views under test-time augmentation
            for sample in samples if isinstance(samples, list) else [samples]:
                sample.set_metainfo(dict(load_error=error.reason))
            return data

    def _from_array(self, image: np.ndarray) -> dict:
        return self.array_pipeline(dict(img=image, img_shape=image.shape[:2],
                                        ori_shape=image.shape[:2]))


PLACEHOLDER_SIZE = 256


def load_errors(batch: dict) -> list:
    """Per image of a collated batch: why it could not be read, or None."""
    samples = batch['data_samples']
    first_view = samples[0] if samples and isinstance(samples[0], (list, tuple)) else samples
    return [sample.metainfo.get('load_error') for sample in first_view]


def as_bgr_uint8(image: np.ndarray) -> np.ndarray:
    """A 3-channel uint8 image from a grayscale, BGR or BGRA array (OpenCV channel order)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise DatasetError(f'Image arrays must be uint8, got {image.dtype}.')
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise DatasetError(f'Cannot read an image array of shape {image.shape}.')


def build_model(cfg: Config):
    """The config's classifier as the Runner builds it: with the top-level
    ``data_preprocessor`` (normalisation) merged into ``cfg.model``."""
    model_cfg = dict(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    return MODELS.build(model_cfg)


def unreadable_reasons(images: Sequence[ImageInput], scores: np.ndarray) -> Dict[int, str]:
    """``{index: reason}`` for the inputs whose score row is NaN (they could not be read)."""
    reasons = {}
    for index in np.flatnonzero(np.isnan(scores).any(axis=1)):
        try:
            load_image(images[index])
            reasons[int(index)] = 'unreadable'
        except BadImageError as error:
            reasons[int(index)] = error.reason
    return reasons


def list_images(folder: str) -> List[str]:
    """The image files directly in ``folder``, in natural order."""
    if not osp.isdir(folder):
        raise DatasetError(f'Image folder {folder!r} does not exist.')
    images = scan_images(folder)
    if not images:
        raise DatasetError(f'Image folder {folder!r} contains no images.')
    return images


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
    for a file you trust.
    """

    def __init__(self,
                 config: Union[str, Config],
                 checkpoint: str,
                 device: Optional[str] = None,
                 tta: bool = False,
                 cfg_options: Optional[dict] = None,
                 trust_checkpoint: bool = False,
                 precision: Optional[str] = None):
        self.cfg = config if isinstance(config, Config) else load_config(config, cfg_options)
        # nested transforms (TestTimeAug) are built from the default scope's registry
        init_default_scope(self.cfg.get('default_scope', 'mmpretrain'))
        self.device = torch.device(device or default_device())
        self.checkpoint_path = checkpoint = resolve_checkpoint(checkpoint)
        if trust_checkpoint:
            trust_checkpoint_file(checkpoint)
        self.tta = tta
        model = build_model(self.cfg)
        # mapped, not read: the weights become the model's as they are copied below, and a
        # training checkpoint's optimizer state is never read
        state = read_checkpoint(checkpoint, mmap=True)
        load_weights(model, state, checkpoint, assign=True)
        self.classes = checkpoint_classes(state) or self._config_classes()
        del state
        if len(self.classes) != self.cfg.model.head.num_classes:
            raise ConfigError(
                f'{checkpoint!r} names {len(self.classes)} classes but its head has '
                f'{self.cfg.model.head.num_classes} outputs.')
        if tta:
            tta_cfg = dict(self.cfg.get('tta_model') or dict(type='AverageClsScoreTTA'))
            model = MODELS.build(dict(tta_cfg, module=model))
        # the config's precision ('auto': bfloat16 weights + channels-last where the hardware
        # has bfloat16)
        self.precision = resolve_precision(precision or self.cfg.get('precision', 'auto'),
                                           self.device.type)
        self.model = prepare_for_inference(model, self.precision).to(self.device).eval()
        self.test_pipeline_cfg = copy.deepcopy(self.cfg.test_dataloader.dataset.pipeline)
        self.pipeline_cfg = tta_pipeline(self.cfg) if tta else self.test_pipeline_cfg

    def _config_classes(self) -> tuple:
        return tuple(build_split_dataset(self.cfg, 'train').metainfo['classes'])

    def predict_scores(self, images: Sequence[ImageInput], batch_size: int = 32,
                       num_workers: int = 0, progress: bool = False) -> np.ndarray:
        """Class probabilities, ``(len(images), len(classes))``, in input order; the row of
        an image that cannot be read is NaN.

        In a distributed run each process scores its share of the images and every process
        gets the whole table back.
        """
        return map_sharded(lambda indices: self._scores([images[i] for i in indices],
                                                        batch_size, num_workers, progress),
                           len(images))

    @torch.no_grad()
    def _scores(self, images, batch_size, num_workers, progress) -> np.ndarray:
        loader = DataLoader(ImageListDataset(images, self.pipeline_cfg), batch_size=batch_size,
                            num_workers=num_workers, collate_fn=default_collate,
                            pin_memory=self.device.type == 'cuda')
        bar = ProgressBar(len(images)) if progress and is_main_process() else None
        scores = []
        for batch in loader:
            with autocast(self.precision, self.device.type):
                samples = self.model.test_step(batch)
            batch_scores = torch.stack([s.pred_score for s in samples]).float().cpu()
            failed = [i for i, error in enumerate(load_errors(batch)) if error]
            batch_scores[failed] = float('nan')
            scores.append(batch_scores)
            if bar:
                bar.update(len(samples))
        if bar:
            print()
        return torch.cat(scores).numpy() if scores else np.zeros((0, len(self.classes)))

    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], topk: int = 1,
                batch_size: int = 32, num_workers: int = 0, progress: bool = False,
                class_names: Optional[dict] = None) -> pd.DataFrame:
        """Predict a folder, an image path, an array, or a list of paths / arrays.

        Returns one row per image (input order; folders in natural file order) with
        ``image_name`` (file stem, or ``array_<i>``), ``pred_label`` (class folder name),
        ``score`` and, for ``topk > 1``, the next best labels and scores. An image that
        cannot be read keeps its row, with an empty label and a ``status`` column saying why.
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
        scores = self.predict_scores(images, batch_size, num_workers, progress)
        return prediction_frame(names, scores, self.classes, topk=topk, class_names=class_names,
                                errors=unreadable_reasons(images, scores))
