import os
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

import bioplugin  # noqa: F401  (registers the components)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_CONFIG = osp.join(REPO, 'tests', 'configs', 'bio_tiny.py')
RECIPE_CONFIG = osp.join(REPO, 'configs', 'bio_resnext.py')


def class_colour(label: int) -> tuple:
    """A distinct BGR colour per class, so a tiny model can learn the classes."""
    return ((label * 83) % 256, (label * 151 + 60) % 256, (label * 47 + 120) % 256)


def write_image(path: str, label: int, size=(40, 48), seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    img = np.empty((*size, 3), np.uint8)
    img[:] = class_colour(label)
    img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img), path
    return path


def make_image_folder(root: str, class_names, per_class: int = 4, val_per_class: int = 2,
                      test_images: int = 3, ext: str = '.jpg') -> str:
    """``root/{train,val}/<class>/*`` with class-coloured images and a flat ``root/test``."""
    for split_index, (split, count) in enumerate((('train', per_class), ('val', val_per_class))):
        for label, name in enumerate(class_names):
            for i in range(count):
                write_image(osp.join(root, split, name, f'img_{i}{ext}'), label,
                            size=(36 + 4 * (i % 3), 44), seed=(split_index, label, i))
    os.makedirs(osp.join(root, 'test'), exist_ok=True)
    for i in range(test_images):
        write_image(osp.join(root, 'test', f'test_{i}{ext}'), i % len(class_names), seed=i)
    return root


@pytest.fixture
def tiny_data(tmp_path):
    """Three classes, 8 training and 3 validation images each, 3 test images."""
    return make_image_folder(str(tmp_path / 'data'), ['0', '1', '2'], per_class=8,
                             val_per_class=3)


def run_tool(*args, cwd=REPO):
    """Run a script of ``tools/`` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=900)
