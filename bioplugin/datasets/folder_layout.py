"""The folder rules of an ImageNet-style dataset, shared by ``BioDataset`` and the doctor.

A labeled split is ``<split>/<class>/**/<image>``; class folders are ordered numerically when
every name is an integer (``0, 1, 2, …, 10``) and naturally otherwise; image extensions match
case-insensitively; hidden files and folders are skipped. An unlabeled split is a flat folder.
"""
import os
import os.path as osp
import re
from typing import List, Sequence, Tuple

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


def class_folders(folder: str) -> List[str]:
    """The visible sub-folders of a labeled split, in class order."""
    return sort_class_names(entry.name for entry in os.scandir(folder)
                            if entry.is_dir() and not entry.name.startswith('.'))
