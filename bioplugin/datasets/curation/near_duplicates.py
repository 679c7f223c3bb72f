"""Near-duplicate images: resized, re-encoded or slightly cropped copies of one photo.

Photos of one specimen saved twice — a smaller export, a re-compressed JPEG, a tighter crop —
are the usual leak between train and val; byte hashes miss them. Two stages, OpenCV and numpy:

1. **Candidates.** Each image becomes a 32 x 32 band-pass thumbnail (difference of Gaussians,
   zero mean, unit norm), as do 18 crops of it (90 and 95 % of each side, at 3 x 3 positions).
   Two images are candidates when a crop of one correlates with the other at
   :data:`CANDIDATE` or more; each image keeps its :data:`NEIGHBOURS` best candidates. All
   pairs are compared, a block at a time, keeping only each image's best: memory grows
   linearly with the number of images (a 4 KB thumbnail each), time with its square. An upper
   bound of each correlation from the thumbnails' :data:`DIRECTIONS` principal directions
   (and the length of what they leave out) skips the pairs that cannot reach
   :data:`CANDIDATE`; the others are computed in full, so the candidates are exactly those of
   the whole similarity matrix.
2. **Verification.** The smaller image (long side at most 96 px, band-passed) is searched in
   the other, resized so that it would be an 85–100 % crop of it (7 x 7 scales, OpenCV's
   ``matchTemplate`` with normalised correlation). At :data:`THRESHOLD` (0.9) or more the pair
   is a near-duplicate.

On the plankton demo set (105 phytoplankton images, many of them near-identical dark blobs on a
grey background) distinct images reached at most 0.857, while copies of its images scored at
least 0.997 (half size), 0.989 (JPEG quality 60) and 0.940 (5 % cropped off one corner):
``tools/data/near_duplicate_margin.py`` measures this on any dataset. The doctor keeps a
64 px preview per image for the candidates (:data:`SEARCH_SIDE`; there the copies' thumbnails
scored at least 0.960, 0.997 and 0.939) and decodes the files of candidate pairs again to
verify them.
"""
import itertools
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

THRESHOLD = 0.9  # verified similarity from which two images are near-duplicates
CANDIDATE = 0.8  # thumbnail similarity from which a pair is verified
NEIGHBOURS = 5  # candidates verified per image
PREVIEW_SIDE = 96  # long side of the grey preview a pair is verified on
SEARCH_SIDE = 64  # long side of the grey preview the doctor keeps per image for the candidates
THUMBNAIL = 32
CROPS = (0.95, 0.9)
SCALES = tuple(np.round(np.arange(0.85, 1.0001, 0.025), 3))
BAND = (0.7, 2.5)  # standard deviations (pixels) of the difference of Gaussians
FLAT = 1e-2  # band-passed thumbnails with less energy are flat images
DIRECTIONS = 64  # principal directions of the thumbnails in the candidate bound
SAMPLE = 2048  # thumbnails the directions are fitted on
BOUND_SLACK = 1e-3  # below the candidate threshold, for rounding in the bound
ROWS, COLUMNS = 128, 2048  # images whose crops / whole thumbnails are compared at once
PENDING = 1 << 20  # similarities held before each image's best are picked from them


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
    fine, coarse = BAND
    return cv2.GaussianBlur(grey, (0, 0), fine) - cv2.GaussianBlur(grey, (0, 0), coarse)


def _blur_matrix(sigma: float) -> np.ndarray:
    """OpenCV's Gaussian blur along a line of :data:`THUMBNAIL` pixels (its kernel and
    border) as a matrix: ``B @ X @ B.T`` blurs a thumbnail ``X`` as ``cv2.GaussianBlur``."""
    impulses = np.eye(THUMBNAIL, dtype=np.float32)[:, :, None]
    return np.stack([cv2.GaussianBlur(line, (0, 0), sigma)[:, 0] for line in impulses], axis=1)


_BLURS = tuple(_blur_matrix(sigma) for sigma in BAND)


def thumbnails(small: np.ndarray) -> np.ndarray:
    """``(n, 1024)``: ``n`` grey ``(32, 32)`` images band-passed (:func:`band_pass`, 512 at
    once), zero mean, unit norm; zero for a flat image (what is left is rounding)."""
    found = np.empty((len(small), THUMBNAIL * THUMBNAIL), np.float32)
    (fine, coarse), step = _BLURS, 512
    for start in range(0, len(small), step):
        chunk = small[start:start + step].astype(np.float32)
        vectors = (fine @ chunk @ fine.T - coarse @ chunk @ coarse.T).reshape(len(chunk), -1)
        vectors -= vectors.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        found[start:start + len(chunk)] = np.divide(vectors, norms, out=np.zeros_like(vectors),
                                                    where=norms > FLAT)
    return found


def _shrink(grey: np.ndarray) -> np.ndarray:
    return cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA)


def crop_thumbnails(grey: np.ndarray) -> np.ndarray:
    """``(19, 1024)``: the thumbnail of the whole image, then of its crops."""
    return thumbnails(np.stack(_shrunk_crops(grey)))


def _shrunk_crops(grey: np.ndarray) -> List[np.ndarray]:
    height, width = grey.shape
    found = [_shrink(grey)]
    for share in CROPS:
        crop_h, crop_w = max(1, round(height * share)), max(1, round(width * share))
        for fy, fx in itertools.product((0, 0.5, 1), repeat=2):
            y, x = round((height - crop_h) * fy), round((width - crop_w) * fx)
            found.append(_shrink(grey[y:y + crop_h, x:x + crop_w]))
    return found


def whole_thumbnails(previews: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, 1024)``: the thumbnail of each whole preview (the first row of
    :func:`crop_thumbnails`)."""
    found = np.empty((len(previews), THUMBNAIL * THUMBNAIL), np.float32)
    for start in range(0, len(previews), COLUMNS):
        chunk = previews[start:start + COLUMNS]
        found[start:start + len(chunk)] = thumbnails(np.stack([_shrink(grey) for grey in chunk]))
    return found


def principal_directions(vectors: np.ndarray, count: int = DIRECTIONS) -> np.ndarray:
    """``(1024, count)`` orthonormal: the directions that hold most of the energy of
    ``vectors`` (thumbnails), from an evenly spaced sample of at most :data:`SAMPLE`."""
    sample = vectors[::max(1, len(vectors) // SAMPLE)][:SAMPLE].astype(np.float64)
    if len(sample) < sample.shape[1]:  # eigenvectors of the smaller Gram matrix
        energy, vectors = np.linalg.eigh(sample @ sample.T)
        directions = sample.T @ vectors
    else:
        energy, directions = np.linalg.eigh(sample.T @ sample)
    keep = np.argsort(energy)[::-1][:count]
    directions = directions[:, keep[energy[keep] > 1e-6 * max(energy.max(), 1e-30)]]
    return (directions / np.linalg.norm(directions, axis=0)).astype(np.float32)


def with_residual(vectors: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``(n, d + 1)``: each vector's coordinates along ``directions`` and the length of
    what they leave out. For two vectors ``x`` and ``y`` the dot product of these is an
    upper bound of ``x . y`` (Cauchy-Schwarz on the part outside the directions)."""
    found = np.empty((len(vectors), directions.shape[1] + 1), np.float32)
    for start in range(0, len(vectors), COLUMNS):  # a block at a time: no copy of all
        block = vectors[start:start + COLUMNS]
        inside = block @ directions
        found[start:start + len(block), :-1] = inside
        found[start:start + len(block), -1] = np.linalg.norm(block - inside @ directions.T,
                                                             axis=1)
    return found


class BestPartners:
    """Each image's ``count`` partners of highest similarity, from similarities added in any
    order (a pair may come twice: the larger value counts). Memory: ``count`` partners per
    image and at most :data:`PENDING` similarities not yet sorted in."""

    def __init__(self, count: int):
        self.count = count
        self._kept = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        self._new: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._new_size = 0

    def add(self, first: np.ndarray, second: np.ndarray, values: np.ndarray) -> None:
        """Similarities ``values`` of the pairs ``(first[k], second[k])``, for both images."""
        self._new += [(first, second, values), (second, first, values)]
        self._new_size += 2 * len(values)
        if self._new_size > PENDING:
            self._reduce()

    def pairs(self) -> List[Tuple[int, int]]:
        """Index pairs ``(i, j)``, ``i < j``, where one is among the other's best."""
        self._reduce()
        image, partner, _ = self._kept
        return sorted({(int(a), int(b)) for a, b in zip(np.minimum(image, partner),
                                                        np.maximum(image, partner))})

    def _reduce(self) -> None:
        image, partner, value = (np.concatenate(parts) for parts in zip(self._kept, *self._new))
        self._new, self._new_size = [], 0
        order = np.lexsort((-value, partner, image))  # the largest value of each pair first
        image, partner, value = image[order], partner[order], value[order]
        first = np.ones(len(image), bool)
        first[1:] = (image[1:] != image[:-1]) | (partner[1:] != partner[:-1])
        image, partner, value = image[first], partner[first], value[first]
        order = np.lexsort((partner, -value, image))  # each image's best first
        image, partner, value = image[order], partner[order], value[order]
        starts = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
        rank = np.arange(len(image)) - np.repeat(starts, np.diff(np.r_[starts, len(image)]))
        keep = rank < self.count
        self._kept = (image[keep], partner[keep], value[keep])


def candidate_pairs(previews: Sequence[np.ndarray], neighbours: int = NEIGHBOURS,
                    threshold: float = CANDIDATE,
                    progress: Optional[Callable[[int, int], None]] = None
                    ) -> List[Tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, worth verifying: where a crop of one correlates
    with the other at ``threshold`` or more, among each image's ``neighbours`` best.

    Memory grows linearly with the number of images: the crops of :data:`ROWS` images at a
    time are compared with the whole thumbnails of :data:`COLUMNS` at a time, and only each
    image's best partners are kept. A cheap upper bound of every correlation
    (:func:`with_residual` on the thumbnails' :data:`DIRECTIONS` principal directions) skips
    the pairs that cannot reach ``threshold``; the rest are computed exactly.
    ``progress(images done, images)`` is called after each block of rows.
    """
    count = len(previews)
    if count < 2:
        return []
    whole = whole_thumbnails(previews)
    directions = principal_directions(whole)
    whole_bound = with_residual(whole, directions)
    best = BestPartners(neighbours)
    for start in range(0, count, ROWS):
        crops = crop_bound = None  # free the last block's before this block's are made
        block = previews[start:start + ROWS]
        crops = thumbnails(np.stack([small for grey in block for small in _shrunk_crops(grey)]))
        crops = crops.reshape(len(block), -1, crops.shape[1])
        rows, variants, dims = crops.shape
        crop_bound = with_residual(crops.reshape(-1, dims), directions)
        for column in range(0, count, COLUMNS):
            bound = crop_bound @ whole_bound[column:column + COLUMNS].T
            bound = bound.reshape(rows, variants, -1).max(1)
            row, col = np.nonzero(bound >= threshold - BOUND_SLACK)
            col += column
            mask = row + start != col
            row, col = row[mask], col[mask]
            values = _correlations(crops, whole, row, col, column, bound.shape[1])
            found = values >= threshold
            best.add(row[found] + start, col[found], values[found])
        if progress is not None:
            progress(min(start + ROWS, count), count)
    return best.pairs()


def _correlations(crops: np.ndarray, whole: np.ndarray, row: np.ndarray, col: np.ndarray,
                  column: int, width: int) -> np.ndarray:
    """``max over the crops of crops[row] . whole[col]`` for each pair (``row`` sorted)."""
    if len(row) > crops.shape[0] * width // 8:  # many pairs: the whole tile at once
        tile = crops.reshape(-1, crops.shape[2]) @ whole[column:column + width].T
        return tile.reshape(crops.shape[0], crops.shape[1], -1).max(1)[row, col - column]
    values = np.empty(len(row), np.float32)
    for segment in np.split(np.arange(len(row)), np.flatnonzero(np.diff(row)) + 1):
        if len(segment):
            values[segment] = (crops[row[segment[0]]] @ whole[col[segment]].T).max(0)
    return values


def thumbnail_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """The candidate search's similarity of two grey previews (the pair is verified from
    :data:`CANDIDATE` on): the best correlation of a crop of one with the other."""
    first_crops, second_crops = crop_thumbnails(first), crop_thumbnails(second)
    return float(max((first_crops @ second_crops[0]).max(), (second_crops @ first_crops[0]).max()))


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
