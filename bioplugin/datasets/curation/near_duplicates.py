"""Near-duplicate images: resized, re-encoded or slightly cropped copies of one photo.

Photos of one specimen saved twice — a smaller export, a re-compressed JPEG, a tighter crop —
are the usual leak between train and val; byte hashes miss them. Two stages, OpenCV and numpy:

1. **Candidates.** Each image becomes a 32 x 32 band-pass thumbnail (difference of Gaussians,
   zero mean, unit norm), as do 18 crops of it (90 and 95 % of each side, at 3 x 3 positions).
   Two images are candidates when a crop of one correlates with the other at
   :data:`CANDIDATE` or more; each image keeps its :data:`NEIGHBOURS` best candidates.
2. **Verification.** The smaller image (long side at most 96 px, band-passed) is searched in
   the other, resized so that it would be an 85–100 % crop of it (7 x 7 scales, OpenCV's
   ``matchTemplate`` with normalised correlation). At :data:`THRESHOLD` (0.9) or more the pair
   is a near-duplicate.

On the plankton demo set (105 phytoplankton images, many of them near-identical dark blobs on a
grey background) distinct images reached at most 0.857, while copies of its images scored at
least 0.997 (half size), 0.989 (JPEG quality 60) and 0.940 (5 % cropped off one corner):
``tools/data/near_duplicate_margin.py`` measures this on any dataset.
"""
import itertools
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

THRESHOLD = 0.9  # verified similarity from which two images are near-duplicates
CANDIDATE = 0.8  # thumbnail similarity from which a pair is verified
NEIGHBOURS = 5  # candidates verified per image
PREVIEW_SIDE = 96  # long side of the grey preview kept per image
THUMBNAIL = 32
CROPS = (0.95, 0.9)
SCALES = tuple(np.round(np.arange(0.85, 1.0001, 0.025), 3))


def grey_preview(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    """A grey ``uint8`` copy of a BGR image whose long side is at most ``side``."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = grey.shape
    factor = min(1.0, side / max(height, width))
    if factor < 1.0:
        grey = cv2.resize(grey, (max(1, round(width * factor)), max(1, round(height * factor))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey)


def band_pass(grey: np.ndarray) -> np.ndarray:
    """Difference of Gaussians: keeps the detail that tells two specimens apart, drops the
    brightness and the overall silhouette that many specimens share."""
    grey = grey.astype(np.float32)
    return cv2.GaussianBlur(grey, (0, 0), 0.7) - cv2.GaussianBlur(grey, (0, 0), 2.5)


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    small = cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)
    vector = band_pass(small).ravel()
    vector -= vector.mean()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def crop_thumbnails(grey: np.ndarray) -> np.ndarray:
    """``(19, 1024)``: the thumbnail of the whole image, then of its crops."""
    height, width = grey.shape
    found = [_thumbnail(grey)]
    for share in CROPS:
        crop_h, crop_w = max(1, round(height * share)), max(1, round(width * share))
        for fy, fx in itertools.product((0, 0.5, 1), repeat=2):
            y, x = round((height - crop_h) * fy), round((width - crop_w) * fx)
            found.append(_thumbnail(grey[y:y + crop_h, x:x + crop_w]))
    return np.stack(found)


def candidate_pairs(previews: Sequence[np.ndarray], neighbours: int = NEIGHBOURS,
                    threshold: float = CANDIDATE) -> List[Tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, worth verifying."""
    if len(previews) < 2:
        return []
    crops = np.stack([crop_thumbnails(preview) for preview in previews]).astype(np.float32)
    count, variants, dims = crops.shape
    whole = np.ascontiguousarray(crops[:, 0].T)  # (D, N)
    similarity = np.empty((count, count), np.float32)
    for start in range(0, count, 64):  # one matrix product of (rows x 19, D) by (D, N)
        block = crops[start:start + 64].reshape(-1, dims) @ whole
        similarity[start:start + 64] = block.reshape(-1, variants, count).max(1)
    similarity = np.maximum(similarity, similarity.T)
    np.fill_diagonal(similarity, -1.0)
    pairs = set()
    keep = min(neighbours, count - 1)
    best = np.argpartition(-similarity, keep - 1, axis=1)[:, :keep]
    for i, row in enumerate(best):
        for j in row:
            if similarity[i, j] >= threshold:
                pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)


def _search(larger: np.ndarray, smaller: np.ndarray) -> float:
    """Best normalised correlation of ``smaller`` inside ``larger`` resized so that
    ``smaller`` would be an 85–100 % crop of it."""
    height, width = smaller.shape
    template, best = band_pass(smaller), -1.0
    for share_y, share_x in itertools.product(SCALES, SCALES):
        size = (max(width, round(width / share_x)), max(height, round(height / share_y)))
        scene = band_pass(cv2.resize(larger, size, interpolation=cv2.INTER_AREA))
        best = max(best, float(cv2.matchTemplate(scene, template, cv2.TM_CCOEFF_NORMED).max()))
    return best


def similarity(first: np.ndarray, second: np.ndarray) -> float:
    """How well one grey preview is a resized, re-encoded or cropped copy of the other: the
    normalised correlation of their band-passed pixels, 1 for a copy."""
    if min(first.shape + second.shape) < 8:
        return 0.0  # too small to compare
    return max(_search(first, second), _search(second, first))


def near_duplicates(previews: Sequence[Optional[np.ndarray]],
                    threshold: float = THRESHOLD) -> List[Tuple[int, int, float]]:
    """``(i, j, similarity)`` of every near-duplicate pair among ``previews`` (None: an image
    that could not be decoded, skipped)."""
    usable = [i for i, preview in enumerate(previews) if preview is not None]
    found = []
    for a, b in candidate_pairs([previews[i] for i in usable]):
        score = similarity(previews[usable[a]], previews[usable[b]])
        if score >= threshold:
            found.append((usable[a], usable[b], score))
    return found
