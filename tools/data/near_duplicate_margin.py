"""How far apart copies and distinct images are on your data, to choose --near-threshold.

    python tools/data/near_duplicate_margin.py data/bio [--copies 30]

Compares every pair of distinct images of the dataset (all splits) with the doctor's
near-duplicate similarity, and makes half-size, JPEG-quality-60 and 5 %-cropped copies of
--copies of them: prints the highest similarity of a distinct pair (the doctor's threshold
must stay above it) and the lowest of each kind of copy (it must stay below them), with the
lowest similarity of the copies' thumbnails in the candidate search on the doctor's 64 px
previews (a copy below the candidate threshold, 0.8, would never be verified).
"""
import argparse
import itertools
import sys

import cv2
import numpy as np

import bioplugin  # noqa: F401
from bioplugin.datasets.folder_layout import scan_images
from bioplugin.datasets.image_io import load_image
from bioplugin.datasets.curation.near_duplicates import (CANDIDATE, SEARCH_SIDE, THRESHOLD,
                                                         grey_preview, similarity,
                                                         thumbnail_similarity)


def copies_of(image: np.ndarray) -> dict:
    height, width = image.shape[:2]
    _, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    dy, dx = max(1, round(height * 0.05)), max(1, round(width * 0.05))
    return {'half size': cv2.resize(image, (max(1, width // 2), max(1, height // 2)),
                                    interpolation=cv2.INTER_AREA),
            'JPEG q60': cv2.imdecode(encoded, cv2.IMREAD_COLOR),
            '5 % cropped (corner)': image[dy:, dx:]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('data_root')
    parser.add_argument('--copies', type=int, default=30, help='images to copy (default: 30)')
    args = parser.parse_args(argv)
    paths = scan_images(args.data_root, recursive=True)
    if len(paths) < 2:
        print(f'error: {args.data_root!r} holds fewer than two images.', file=sys.stderr)
        return 2
    images = [load_image(path) for path in paths]
    previews = [grey_preview(image) for image in images]
    distinct = [(similarity(previews[a], previews[b]), a, b)
                for a, b in itertools.combinations(range(len(paths)), 2)]
    score, a, b = max(distinct)
    print(f'{len(paths)} images, {len(distinct)} distinct pairs: highest similarity '
          f'{score:.3f} ({paths[a]} ~ {paths[b]})')
    lowest: dict = {}
    for index in np.linspace(0, len(paths) - 1, min(args.copies, len(paths))).astype(int):
        for kind, copy in copies_of(images[index]).items():
            values = (similarity(previews[index], grey_preview(copy)),
                      thumbnail_similarity(grey_preview(images[index], SEARCH_SIDE),
                                           grey_preview(copy, SEARCH_SIDE)))
            lowest[kind] = np.minimum(lowest.get(kind, 1.0), values)
    for kind, (value, thumbnail) in lowest.items():
        print(f'{kind:22} lowest similarity to its original {value:.3f} '
              f'(thumbnails {thumbnail:.3f})')
    print(f'doctor threshold (--near-threshold): {THRESHOLD}; candidate threshold on the '
          f'thumbnails: {CANDIDATE}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
