import logging
import os
import os.path as osp
import re
from contextlib import nullcontext
from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..errors import DatasetError
from ..fileio import append_unique_line
from .image_io import BadImageError
from .sample_seed import derive_seed, seeded_global_rng

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp',
                  '.ppm', '.pgm', '.pbm')


def sort_class_names(names: Sequence[str]) -> List[str]:
    """Order class names: numerically when every name is an integer, naturally otherwise.

    ``['10', '2', '0']`` → ``['0', '2', '10']``; ``['sp10', 'sp2']`` → ``['sp2', 'sp10']``.
    """
    names = list(names)
    if names and all(re.fullmatch(r'[+-]?\d+', name) for name in names):
        return sorted(names, key=lambda name: (int(name), name))
    return sorted(names, key=natural_key)


def natural_key(text: str) -> Tuple:
    """Sort key that compares digit runs as numbers and letters case-insensitively."""
    chunks = re.split(r'(\d+)', text)
    return tuple((0, int(chunk), '') if chunk.isdigit() else (1, 0, chunk.casefold())
                 for chunk in chunks if chunk) + ((2, 0, text), )


def is_image_file(name: str, extensions: Sequence[str] = IMG_EXTENSIONS) -> bool:
    """True for a visible file whose extension (any case) is an image type."""
    return not name.startswith('.') and name.lower().endswith(tuple(extensions))


def scan_images(folder: str, recursive: bool = False,
                extensions: Sequence[str] = IMG_EXTENSIONS) -> List[str]:
    """Image paths under ``folder`` in natural order of their relative paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        found.extend(osp.join(root, name) for name in files if is_image_file(name, extensions))
        if not recursive:
            break
    return sorted(found, key=lambda path: natural_key(osp.relpath(path, folder)))


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
    ``bad_image_policy='raise'`` stops instead::

        train_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='train'))
        val_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='val', classes_from='train'))
        test_dataloader = dict(dataset=dict(
            type='BioDataset', data_root='data/bio', data_prefix='test', classes_from='train',
            labeled=False))
    """

    BAD_IMAGE_POLICIES = ('skip', 'raise')

    def __init__(self,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 labeled: bool = True,
                 classes_from: Optional[str] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 bad_image_policy: str = 'skip',
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
        super().__init__(ann_file='', data_root=data_root, data_prefix=data_prefix, **kwargs)

    def set_sample_seed(self, seed: int, epoch: int) -> None:
        """Make sample ``i``'s augmentation depend on ``(seed, epoch, i)`` only. Workers see
        the new epoch, also persistent ones (the key lives in shared memory)."""
        self._sample_key.copy_(torch.tensor([seed, epoch]))

    def prepare_data(self, idx: int):
        """The sample through the pipeline; an unreadable image is recorded and, with
        ``bad_image_policy='skip'``, replaced by the next readable one."""
        for offset in range(min(len(self), self.max_refetch + 1)):
            index = (idx + offset) % len(self)
            try:
                with self._sample_rng(index):
                    return super().prepare_data(index)
            except BadImageError as error:
                self._record_bad_image(error)
                if self.bad_image_policy == 'raise':
                    raise
        raise DatasetError(f'Found no readable image among {offset + 1} images of '
                           f'{self.img_prefix!r} (tried from index {idx}); run '
                           'tools/data/check_dataset.py on the data root.')

    def _sample_rng(self, index: int):
        seed, epoch = self._sample_key.tolist()
        return nullcontext() if seed < 0 else seeded_global_rng(derive_seed(seed, epoch, index))

    def _record_bad_image(self, error: BadImageError) -> None:
        """Log an unreadable image once per process and add it to ``bad_image_log``."""
        if error.path in self._reported_bad_images:
            return
        self._reported_bad_images.add(error.path)
        action = 'stopping' if self.bad_image_policy == 'raise' else 'skipped'
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
        classes = self._class_folders(reference)
        if not classes:
            raise DatasetError(f'{reference!r} has no class folders to take class names from.')
        self._metainfo['classes'] = tuple(classes)
        return classes

    def _class_folders(self, folder: str) -> List[str]:
        return sort_class_names(entry.name for entry in os.scandir(folder)
                                if entry.is_dir() and not entry.name.startswith('.'))

    def _load_labeled(self, folder: str, classes: Optional[List[str]]) -> List[dict]:
        found = self._class_folders(folder)
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
        if not images:
            has_subfolders = any(entry.is_dir() for entry in os.scandir(folder))
            hint = (' It has sub-folders: for class folders use `labeled=True`.'
                    if has_subfolders else '')
            raise DatasetError(
                f'{folder!r} contains no images ({", ".join(self.extensions)}).{hint}')
        return [dict(img_path=path) for path in images]

    def extra_repr(self) -> List[str]:
        return [f'Image folder: \t{self.img_prefix}',
                f'Labeled: \t{self.labeled}']
