import logging
import os
import os.path as osp
from contextlib import nullcontext
from typing import List, Optional, Sequence, Union

import numpy as np

import torch
from mmengine.logging import print_log

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..errors import DatasetError
from ..fileio import append_unique_line
from .folder_layout import (IMG_EXTENSIONS, class_folders, is_image_file, natural_key,
                            scan_images, sort_class_names, visible_subfolders)
from .image_io import BadImageError
from .sample_seed import derive_seed, seeded_global_rng
from .transforms.load_image import BioLoadImage

PLACEHOLDER_SIZE = 256

__all__ = ['BioDataset', 'IMG_EXTENSIONS', 'natural_key', 'scan_images', 'sort_class_names']

def process_loaded(image: np.ndarray, info: dict, transforms: Sequence) -> dict:
    """A decoded image with the metadata ``info`` through the ``transforms`` of a pipeline
    that follow its loading step."""
    results = dict(info, img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2])
    for transform in transforms:
        if not isinstance(transform, BioLoadImage):
            results = transform(results)
    return results


def with_metainfo(data: dict, info: dict) -> dict:
    """``data`` (a packed sample) with ``info`` in the metainfo of its data sample, or of every
    view's under test-time augmentation."""
    samples = data['data_samples']
    for sample in samples if isinstance(samples, list) else [samples]:
        sample.set_metainfo(info)
    return data


def placeholder_sample(info: dict, transforms: Sequence) -> dict:
    """The stand-in for a file that cannot be read: a black image through ``transforms``."""
    return process_loaded(np.zeros((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), np.uint8), info,
                          transforms)


@DATASETS.register_module()
class BioDataset(BaseDataset):
    """An ImageNet-style folder of specimen photos: ``<data_root>/<split>/<class>/<image>``.

    Class folders are ordered numerically when every name is an integer (``0, 1, 2, …, 10``)
    and naturally otherwise; ``metainfo['classes']`` holds the folder names, so label *i* is
    the *i*-th name. Image extensions are matched case-insensitively; hidden files are skipped.

    ``classes_from`` names a sibling split (usually ``'train'``) that defines the classes: a
    labeled split must then hold exactly those class folders, and an unlabeled split (a flat
    folder, ``labeled=False``) still knows the class names. ``classes`` (a list or a file with
    one name per line) fixes the class list and its order explicitly.

    An image that cannot be read is logged once, listed in ``bad_image_log`` (the training
    hooks set ``<work_dir>/bad_images.txt``) and replaced by the next readable one;
    ``bad_image_policy='raise'`` stops instead, and ``'placeholder'`` (the test split: one
    prediction row per file) passes a black image flagged with ``load_error``.

    ``serialize_data`` is off by default: MMEngine packs the data list into one buffer that
    loader workers share, which matters for detection-size annotations, not for a path and a
    label per image, and its full garbage collection costs about half a second per dataset
    once torch is loaded (six datasets in one ``tools/train.py`` run)::

        train_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='train'))
        val_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='val', classes_from='train'))
        test_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='test', classes_from='train',
            labeled=False))
    """

    BAD_IMAGE_POLICIES = ('skip', 'raise', 'placeholder')

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 labeled: bool = True,
                 classes_from: Optional[str] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 bad_image_policy: str = 'skip',
                 serialize_data: bool = False,
                 **kwargs):
        if bad_image_policy not in self.BAD_IMAGE_POLICIES:
            raise DatasetError(f'bad_image_policy={bad_image_policy!r}: use one of '
                               f'{", ".join(self.BAD_IMAGE_POLICIES)}.')
        self.labeled = labeled
        self.classes_from = classes_from
        self.extensions = tuple(ext.lower() for ext in extensions)
        self.bad_image_policy = bad_image_policy
        self.bad_image_log: Optional[str] = None
        self._reported_bad_images = set()
        # (seed, epoch) of the run, shared with loader workers; seed -1: not set
        self._sample_key = torch.tensor([-1, 0], dtype=torch.int64).share_memory_()
        super().__init__(ann_file='', data_root=data_root, data_prefix=data_prefix,
                         serialize_data=serialize_data, **kwargs)

    def set_sample_seed(self, seed: int, epoch: int) -> None:
        """Make sample ``i``'s augmentation depend on ``(seed, epoch, i)`` only. Workers see
        the new epoch, also persistent ones (the key lives in shared memory)."""
        self._sample_key.copy_(torch.tensor([seed, epoch]))

    def prepare_data(self, idx: int):
        """The sample through the pipeline, its metainfo carrying ``image_name`` (the path
        inside the split). An unreadable image is recorded and, with
        ``bad_image_policy='skip'``, replaced by the next readable one; with
        ``'placeholder'`` (prediction: one row per file) it becomes a black image whose
        metainfo carries ``load_error``."""
        for offset in range(min(len(self), self.max_refetch + 1)):
            index = (idx + offset) % len(self)
            try:
                with self._sample_rng(index):
                    return self._annotate(super().prepare_data(index), index)
            except BadImageError as error:
                self._record_bad_image(error)
                if self.bad_image_policy == 'raise':
                    raise
                if self.bad_image_policy == 'placeholder':
                    return self._annotate(self._placeholder(index), index, error.reason)
        raise DatasetError(f'Found no readable image among {offset + 1} images of '
                           f'{self.img_prefix!r} (tried from index {idx}); run '
                           'tools/data/check_dataset.py on the data root.')

    def _placeholder(self, index: int) -> dict:
        return placeholder_sample(self.get_data_info(index), self.pipeline.transforms)

    def _annotate(self, data: dict, index: int, load_error: Optional[str] = None) -> dict:
        """Record the image's name inside the split (and why it could not be read) in the
        metainfo of its data sample(s) — a list of views under test-time augmentation."""
        info = dict(image_name=osp.relpath(self.get_data_info(index)['img_path'],
                                           self.img_prefix))
        if load_error is not None:
            info['load_error'] = load_error
        return with_metainfo(data, info)

    def _sample_rng(self, index: int):
        seed, epoch = self._sample_key.tolist()
        return nullcontext() if seed < 0 else seeded_global_rng(derive_seed(seed, epoch, index))

    def _record_bad_image(self, error: BadImageError) -> None:
        """Log an unreadable image once per process and add it to ``bad_image_log``."""
        if error.path in self._reported_bad_images:
            return
        self._reported_bad_images.add(error.path)
        action = {'raise': 'stopping', 'skip': 'skipped',
                  'placeholder': 'no prediction'}[self.bad_image_policy]
        print_log(f'Unreadable image, {action}: {error}', logger='current',
                  level=logging.WARNING)
        if self.bad_image_log:
            append_unique_line(self.bad_image_log, f'{error.path}\t{error.reason}')

    def load_data_list(self) -> List[dict]:
        folder = self.img_prefix
        if not osp.isdir(folder):
            raise DatasetError(
                f'Dataset folder {folder!r} does not exist; set `data_root` to the folder that '
                'holds train/<class>/, val/<class>/ and test/.')
        classes = self._reference_classes()
        if self.labeled:
            data_list = self._load_labeled(folder, classes)
        else:
            if classes is None:
                raise DatasetError(
                    f'The unlabeled split {folder!r} needs class names: set `classes_from` '
                    "(e.g. 'train') or `classes` in its dataset config.")
            data_list = self._load_unlabeled(folder)
        return data_list

    def _reference_classes(self) -> Optional[List[str]]:
        """The class list fixed by ``classes`` or by the ``classes_from`` split, if any."""
        if 'classes' in self._metainfo:
            return list(self._metainfo['classes'])
        if self.classes_from is None:
            return None
        reference = osp.join(self.data_root, self.classes_from)
        if not osp.isdir(reference):
            raise DatasetError(
                f'Class folder source {reference!r} (classes_from={self.classes_from!r}) '
                'does not exist.')
        classes = class_folders(reference)
        if not classes:
            raise DatasetError(f'{reference!r} has no class folders to take class names from.')
        self._metainfo['classes'] = tuple(classes)
        return classes

    def _load_labeled(self, folder: str, classes: Optional[List[str]]) -> List[dict]:
        found = class_folders(folder)
        stray = [name for name in sorted(os.listdir(folder))
                 if osp.isfile(osp.join(folder, name)) and is_image_file(name, self.extensions)]
        if stray:
            raise DatasetError(
                f'{folder!r} holds {len(stray)} image(s) outside any class folder (e.g. '
                f'{stray[0]!r}); a labeled split needs <class>/<image> sub-folders, or set '
                '`labeled=False` for a flat unlabeled folder.')
        if not found:
            raise DatasetError(f'{folder!r} contains no class folders and no images.')
        if classes is None:
            classes = found
            self._metainfo['classes'] = tuple(classes)
        elif set(found) != set(classes):
            extra = sorted(set(found) - set(classes), key=natural_key)
            missing = sorted(set(classes) - set(found), key=natural_key)
            source = self.classes_from or 'the configured `classes`'
            raise DatasetError(
                f'Class folders of {folder!r} differ from those of {source}: '
                f'only here {extra or "none"}, missing here {missing or "none"}.')

        data_list = []
        for label, name in enumerate(classes):
            images = scan_images(osp.join(folder, name), True, self.extensions)
            if not images:
                raise DatasetError(
                    f'Class folder {osp.join(folder, name)!r} contains no images '
                    f'({", ".join(self.extensions)}); add images or remove the folder.')
            data_list.extend(dict(img_path=path, gt_label=label) for path in images)
        return data_list

    def _load_unlabeled(self, folder: str) -> List[dict]:
        images = scan_images(folder, False, self.extensions)
        subfolders = visible_subfolders(folder)
        if not images:
            hint = (' It has sub-folders: for class folders use `labeled=True`.'
                    if subfolders else '')
            raise DatasetError(
                f'{folder!r} contains no images ({", ".join(self.extensions)}).{hint}')
        skipped = sum(len(scan_images(osp.join(folder, name), True, self.extensions))
                      for name in subfolders)
        if skipped:
            print_log(f'{skipped} image(s) in sub-folders of {folder!r} are not predicted: an '
                      'unlabeled split is read flat; move them into the folder itself.',
                      logger='current', level=logging.WARNING)
        return [dict(img_path=path) for path in images]

    def extra_repr(self) -> List[str]:
        return [f'Image folder: \t{self.img_prefix}',
                f'Labeled: \t{self.labeled}']
