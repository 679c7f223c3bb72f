"""Synthetic photos for the benchmark: smooth colour fields, soft shapes and sensor noise, so
JPEG files have realistic sizes and decode costs (a flat colour decodes unrealistically fast)."""
import os
import os.path as osp
from typing import List, Sequence, Tuple

import cv2
import numpy as np

JPEG_QUALITY = 90


def natural_image(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A ``height × width`` BGR uint8 image that compresses like a photo."""
    coarse = rng.uniform(0, 255, (3, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(int(rng.integers(6, 16))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 40 + 1, width // 4 + 2)),
                int(rng.integers(height // 40 + 1, height // 4 + 2)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    rng.uniform(0, 255, 3).tolist(), -1, lineType=cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=max(1.0, width / 400))
    # texture (8-pixel grain) and sensor noise
    grain = rng.standard_normal((height // 8 + 1, width // 8 + 1, 1), dtype=np.float32)
    image += cv2.resize(grain, (width, height), interpolation=cv2.INTER_LINEAR)[..., None] * 12
    image += rng.standard_normal(image.shape, dtype=np.float32) * 6.0
    return np.clip(image, 0, 255).astype(np.uint8)


def write_photos(paths: Sequence[str], size: Tuple[int, int], seed: int = 0) -> List[str]:
    """Write one JPEG (quality 90) of ``size = (width, height)`` to each path."""
    rng = np.random.default_rng(seed)
    for path in paths:
        os.makedirs(osp.dirname(path), exist_ok=True)
        image = natural_image(*size, rng)
        if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f'Cannot write {path!r}.')
    return list(paths)


def make_photo_folder(root: str, count: int, size: Tuple[int, int], seed: int = 0) -> List[str]:
    """``count`` photos in ``root``."""
    return write_photos([osp.join(root, f'photo_{i:04d}.jpg') for i in range(count)], size, seed)


def make_train_folder(root: str, count: int, num_classes: int, size: Tuple[int, int],
                      seed: int = 0) -> List[str]:
    """``root/train/<class>/`` with ``count`` photos dealt round-robin to ``num_classes``
    classes named ``0 … num_classes-1``, and one photo per class in ``root/val/<class>/``;
    returns the training paths."""
    paths = [osp.join(root, 'train', str(i % num_classes), f'photo_{i:04d}.jpg')
             for i in range(count)]
    write_photos([osp.join(root, 'val', str(i), 'photo.jpg') for i in range(num_classes)],
                 size, seed + 1)
    return write_photos(paths, size, seed)
