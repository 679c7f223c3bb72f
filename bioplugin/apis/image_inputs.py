"""Images given to the Python API — files, folders or numpy arrays — as pipeline samples."""
import logging
import os.path as osp
from typing import List, Sequence, Union

import cv2
import numpy as np
from mmcv.transforms import Compose
from mmengine.logging import print_log
from torch.utils.data import Dataset

from mmpretrain.registry import TRANSFORMS

from ..datasets.bio_dataset import placeholder_sample, process_loaded, with_metainfo
from ..datasets.folder_layout import scan_images
from ..datasets.image_io import BadImageError
from ..errors import DatasetError

ImageInput = Union[str, np.ndarray]


class ImageListDataset(Dataset):
    """Image paths and arrays through the test pipeline, for a DataLoader.

    A file that cannot be read becomes the dataset's black placeholder, its data sample
    carrying ``load_error`` (the reason), so every input keeps its place in the output.
    """

    def __init__(self, images: Sequence[ImageInput], pipeline_cfg: list):
        self.images = images
        self.transforms = [TRANSFORMS.build(t) for t in pipeline_cfg]
        self.pipeline = Compose(self.transforms)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        if not isinstance(image, str):
            return process_loaded(as_bgr_uint8(image), {}, self.transforms)
        try:
            return self.pipeline(dict(img_path=image))
        except BadImageError as error:
            print_log(f'Unreadable image, no prediction: {error}', logger='current',
                      level=logging.WARNING)
            return with_metainfo(placeholder_sample(dict(img_path=image), self.transforms),
                                 dict(load_error=error.reason))


def single_threaded_opencv(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: OpenCV without its thread pool in a loader process, as
    MMEngine's Runner sets it (``opencv_num_threads=0``). Each worker already decodes in
    parallel with the others; pools on top of that oversubscribe the cores the model runs
    on (ResNeXt101 prediction with 2 workers on 2 cores: 4-6 % faster)."""
    cv2.setNumThreads(0)


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


def list_images(folder: str) -> List[str]:
    """The image files directly in ``folder``, in natural order."""
    if not osp.isdir(folder):
        raise DatasetError(f'Image folder {folder!r} does not exist.')
    images = scan_images(folder)
    if not images:
        raise DatasetError(f'Image folder {folder!r} contains no images.')
    return images
