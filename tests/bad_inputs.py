"""Dataset folders holding every kind of file that breaks or surprises an image pipeline.

    from bad_inputs import make_bad_image_folder, make_structural_problem_folder

``make_bad_image_folder`` puts the bad files inside good class folders (train/0..2, val, and
the flat test/), so the layout itself is fine. ``make_structural_problem_folder`` breaks the
layout instead: an empty class folder, a class only in val, a train image copied into val and
test, an image outside any class folder, a sub-folder in test/. Everything is deterministic.
"""
import io
import os
import os.path as osp
import shutil

import cv2
import numpy as np
from PIL import Image

from helpers import class_colour, make_image_folder, write_image

CLASSES = ['0', '1', '2']
# Loaded as upright 3-channel images, with a conversion; `expected` says how they look.
LOADABLE = ('gray', 'gray16', 'rgba', 'palette', 'rgb16', 'cmyk', 'exif_rotated')
# Refused by image_io: zero bytes, not an image, corrupt, cut off, too many pixels.
UNREADABLE = ('zero_byte', 'not_image', 'corrupt', 'truncated_jpeg', 'truncated_png', 'bomb')
# Loadable but worth a warning (train/ only).
WARNINGS = ('tiny', 'duplicate', 'ignored')

UPRIGHT_SIZE = (64, 48)  # (width, height) of every loadable kind once loaded
TOP_COLOUR = (0, 0, 255)  # BGR red: the top half of the EXIF-rotated photo when upright
BOMB_SIZE = (20000, 10000)  # pixels the bomb's header claims; above image_io's default limit
JPEG_TOLERANCE = 12


def make_bad_image_folder(root: str) -> dict:
    """A 3-class folder of good images plus one file of each bad kind in train/ and in test/.

    Returns ``root``, ``classes``, ``good`` (the clean images), ``kinds`` (kind → paths, the
    train file first) and ``expected`` (path of each loadable file → ``kind``, ``label``,
    ``size`` (w, h) once upright, BGR ``colour`` of the bottom half, ``top_colour`` and the
    per-channel ``tolerance``).
    """
    make_image_folder(root, CLASSES, per_class=6, val_per_class=2, test_images=3)
    good = sorted(osp.join(folder, name) for folder, _, names in os.walk(root) for name in names)
    kinds, expected = {}, {}
    for index, kind in enumerate(LOADABLE):
        for split, label in (('train', index % 3), ('test', (index + 1) % 3)):
            path = _bad_path(root, split, label, kind, LOADABLE_WRITERS[kind][0])
            expected[path] = dict(LOADABLE_WRITERS[kind][1](path, class_colour(label)),
                                  kind=kind, label=str(label))
            kinds.setdefault(kind, []).append(path)
    for index, kind in enumerate(UNREADABLE):
        for split, seed in (('train', 0), ('test', 1)):
            path = _bad_path(root, split, index % 3, kind, UNREADABLE_WRITERS[kind][0])
            UNREADABLE_WRITERS[kind][1](path, seed)
            kinds.setdefault(kind, []).append(path)
    kinds.update(_warning_files(root))
    return dict(root=root, classes=list(CLASSES), good=good, kinds=kinds, expected=expected)


def make_structural_problem_folder(root: str) -> dict:
    """Good images, but a layout that breaks training; returns ``root`` and ``kinds`` (problem
    → paths of the files or folders concerned)."""
    make_image_folder(root, CLASSES, per_class=6, val_per_class=2, test_images=3)
    empty = [osp.join(root, split, '3') for split in ('train', 'val')]
    for folder in empty:
        os.makedirs(folder)
    # its own noise: with the seed of test/test_0.jpg it would be a recoloured copy of it
    val_only = write_image(osp.join(root, 'val', '4', 'img_0.jpg'), 4, seed=9)
    leaked = osp.join(root, 'train', '0', 'img_0.jpg')
    copies = [osp.join(root, 'val', '0', 'leak.jpg'), osp.join(root, 'test', 'leak.jpg')]
    for copy in copies:
        shutil.copyfile(leaked, copy)
    stray = write_image(osp.join(root, 'train', 'stray.jpg'), 0, seed=7)
    nested = write_image(osp.join(root, 'test', 'nested', 'img.jpg'), 1, seed=8)
    return dict(root=root, kinds={
        'empty_class': empty, 'class_not_in_train': [osp.dirname(val_only)],
        'cross_split_duplicate': [leaked, *copies], 'image_outside_class': [stray],
        'ignored_folder': [osp.dirname(nested)]})


def _bad_path(root: str, split: str, label: int, kind: str, ext: str) -> str:
    folder = osp.join(root, split, str(label)) if split != 'test' else osp.join(root, split)
    os.makedirs(folder, exist_ok=True)
    return osp.join(folder, f'bad_{kind}{ext}')


def _warning_files(root: str) -> dict:
    tiny = write_image(osp.join(root, 'train', '0', 'tiny.png'), 0, size=(16, 16))
    original = osp.join(root, 'train', '1', 'img_0.jpg')
    copy = osp.join(root, 'train', '1', 'img_0_copy.jpg')
    shutil.copyfile(original, copy)
    ignored = osp.join(root, 'train', '2', 'notes.txt')
    with open(ignored, 'w') as file:
        file.write('not an image extension: ignored by training\n')
    return dict(tiny=[tiny], duplicate=[original, copy], ignored=[ignored])


# ---------------------------------------------------------------- loadable kinds

def _uniform(colour, size=UPRIGHT_SIZE) -> np.ndarray:
    image = np.empty((size[1], size[0], 3), np.uint8)
    image[:] = colour
    return image


def _expect(colour, tolerance=0, top_colour=None) -> dict:
    colour = tuple(int(c) for c in colour)
    return dict(size=UPRIGHT_SIZE, colour=colour, top_colour=tuple(top_colour or colour),
                tolerance=tolerance)


def _to_pil(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[..., ::-1]))


def _write_gray(path, colour):
    gray = cv2.cvtColor(_uniform(colour), cv2.COLOR_BGR2GRAY)
    Image.fromarray(gray).save(path)  # mode L
    return _expect([gray[0, 0]] * 3)


def _write_gray16(path, colour):
    gray = cv2.cvtColor(_uniform(colour), cv2.COLOR_BGR2GRAY)
    Image.fromarray(gray.astype(np.uint16) * 257).save(path)  # mode I;16
    return _expect([gray[0, 0]] * 3)


def _write_rgba(path, colour):
    image = np.dstack([_uniform(colour), np.full(UPRIGHT_SIZE[::-1], 128, np.uint8)])
    assert cv2.imwrite(path, image), path
    return _expect(colour)


def _write_palette(path, colour):
    _to_pil(_uniform(colour)).convert('P', palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    return _expect(colour)


def _write_rgb16(path, colour):
    assert cv2.imwrite(path, _uniform(colour).astype(np.uint16) * 257), path
    return _expect(colour)


def _write_cmyk(path, colour):
    _to_pil(_uniform(colour)).convert('CMYK').save(path, quality=95)
    return _expect(colour, JPEG_TOLERANCE)


def _write_exif_rotated(path, colour):
    """Landscape when upright (red top half, class-coloured bottom half); the pixels are
    stored turned a quarter counter-clockwise, portrait, with EXIF orientation 6."""
    upright = _uniform(colour)
    upright[:UPRIGHT_SIZE[1] // 2] = TOP_COLOUR
    exif = Image.Exif()
    exif[0x0112] = 6
    _to_pil(np.rot90(upright, 1)).save(path, quality=95, exif=exif.tobytes())
    return _expect(colour, JPEG_TOLERANCE, TOP_COLOUR)


LOADABLE_WRITERS = {
    'gray': ('.png', _write_gray), 'gray16': ('.png', _write_gray16),
    'rgba': ('.png', _write_rgba), 'palette': ('.png', _write_palette),
    'rgb16': ('.png', _write_rgb16), 'cmyk': ('.jpg', _write_cmyk),
    'exif_rotated': ('.jpg', _write_exif_rotated)}


# ---------------------------------------------------------------- unreadable kinds

def _encoded(ext: str, seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, noise)
    assert ok
    return data.tobytes()


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, 'wb') as file:
        file.write(data)


def _write_corrupt(path, seed):
    """A JPEG's first 200 bytes, garbage, and the end marker: complete but undecodable."""
    garbage = np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    _write_bytes(path, _encoded('.jpg', seed)[:200] + garbage + b'\xff\xd9')


def _write_bomb(path, seed):
    """A small PNG whose header claims BOMB_SIZE pixels."""
    buffer = io.BytesIO()
    Image.new('1', BOMB_SIZE, seed % 2).save(buffer, 'PNG')
    _write_bytes(path, buffer.getvalue())


def _write_text(path, seed):
    _write_bytes(path, f'This text file is named like a JPEG ({seed}).\n'.encode())


def _truncated(ext: str):
    """A writer of a real image cut in half."""
    def write(path, seed):
        data = _encoded(ext, seed)
        _write_bytes(path, data[:len(data) // 2])
    return write


UNREADABLE_WRITERS = {
    'zero_byte': ('.jpg', lambda path, seed: _write_bytes(path, b'')),
    'not_image': ('.jpg', _write_text), 'corrupt': ('.jpg', _write_corrupt),
    'truncated_jpeg': ('.jpg', _truncated('.jpg')), 'truncated_png': ('.png', _truncated('.png')),
    'bomb': ('.png', _write_bomb)}
