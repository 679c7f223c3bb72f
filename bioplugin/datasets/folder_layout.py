"""The folder rules of an ImageNet-style dataset, shared by ``BioDataset`` and the doctor.

A labeled split is ``<split>/<class>/**/<image>``; class folders are ordered numerically when
every name is an integer (``0, 1, 2, …, 10``) and naturally otherwise; image extensions match
case-insensitively; hidden files and folders are skipped. An unlabeled split is a flat folder.
"""
import os
import os.path as osp
import re
from typing import List, Sequence, Tuple

from ..errors import DatasetError

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


def visible_subfolders(folder: str) -> List[str]:
    """The names of the visible sub-folders of ``folder``; a symbolic link that leads nowhere
    (a loop, a missing target) is one sentence."""
    names = []
    for entry in os.scandir(folder):
        if entry.name.startswith('.'):
            continue
        try:
            is_folder = entry.is_dir()
        except OSError as error:
            raise DatasetError(f'{entry.path!r} is a symbolic link that leads nowhere '
                               f'({error.strerror}); remove it, or point it at a folder of '
                               'images.') from None
        if is_folder:
            names.append(entry.name)
    return names


def class_folders(folder: str) -> List[str]:
    """The visible sub-folders of a labeled split, in class order. Two of them that are one
    folder (a link to another class folder) would train the same images as two classes: one
    sentence."""
    names = sort_class_names(visible_subfolders(folder))
    seen = {}
    for name in names:
        real = osp.realpath(osp.join(folder, name))
        if real in seen:
            raise DatasetError(
                f'Class folders {seen[real]!r} and {name!r} of {folder!r} are one folder '
                f'({real}): one links to the other, so its images would train two classes; '
                'remove the link.')
        seen[real] = name
    return names
