"""The dataset doctor: find every file and folder of a dataset that training cannot use.

    python tools/data/check_dataset.py data/bio [--workers 8] [--out findings.csv]

Each image is read, probed and decoded with exactly the code training uses
(:mod:`bioplugin.datasets.image_io`), in parallel. Findings have a severity: ``error`` would
break or corrupt training, ``warning`` loads but deserves a look, ``info`` is converted
automatically (grayscale, alpha, palette, 16-bit, CMYK, EXIF rotation). :data:`ISSUES` lists
the codes. A file is *truncated* when it has a JPEG/PNG signature but no end marker, *corrupt*
when it is complete but cannot be decoded, *not_image* when it has no known image signature.
Byte-identical files are *duplicates*; resized, re-encoded or slightly cropped copies are
*near-duplicates* (:mod:`~bioplugin.datasets.curation.near_duplicates`): in two splits an error (a
leak between train and evaluation), within one a warning. Memory grows linearly with the number
of images (a 64 px grey preview and a 4 KB thumbnail each); ``progress`` (the tool: stderr)
gets a line at most every :data:`PROGRESS_SECONDS` during a long run.
"""
import hashlib
import os
import os.path as osp
import time
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from PIL import Image

from ...errors import DatasetError
from ..folder_layout import (class_folders, is_image_file, natural_key, scan_images,
                             visible_subfolders)
from ..image_io import (MAX_IMAGE_PIXELS, BadImageError, ImageHeader, decode_image,
                       probe_image, read_image_bytes)
from .near_duplicates import SEARCH_SIDE, THRESHOLD, candidate_pairs, grey_preview, similarity

SPLITS = ('train', 'val', 'test')
SEVERITIES = ('error', 'warning', 'info')
DEFAULT_MIN_SIZE = 32
PROGRESS_SECONDS = 30.0  # a progress line at most this often; a shorter run prints none
VERIFY_BATCH = 32  # candidate pairs one process verifies at a time (each file decoded once)

# Issue code → severity, in the order reports list them.
ISSUES: Dict[str, str] = {
    'zero_byte': 'error',
    'unreadable': 'error',
    'not_image': 'error',
    'corrupt': 'error',
    'truncated': 'error',
    'decompression_bomb': 'error',
    'cross_split_duplicate': 'error',
    'cross_split_near_duplicate': 'error',
    'image_outside_class': 'error',
    'no_classes': 'error',
    'empty_class': 'error',
    'class_not_in_train': 'error',
    'class_missing_from_val': 'error',
    'missing_val': 'error',
    'duplicate': 'warning',
    'near_duplicate': 'warning',
    'tiny': 'warning',
    'ignored_file': 'warning',
    'ignored_folder': 'warning',
    'missing_test': 'warning',
    'grayscale': 'info',
    'alpha_dropped': 'info',
    'palette': 'info',
    'high_bit_depth': 'info',
    'cmyk': 'info',
    'exif_rotated': 'info',
}
COLUMNS = ['path', 'split', 'class', 'issue', 'severity', 'message', 'width', 'height', 'mode',
           'hash']

GRAY_MODES = ('1', 'L', 'LA', 'La', 'I', 'F', 'I;16', 'I;16L', 'I;16B', 'I;16N')
ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')
PALETTE_MODES = ('P', 'PA')
# Leading bytes of the formats in IMG_EXTENSIONS: tells "not an image" from "corrupt image".
SIGNATURES = ((b'\xff\xd8\xff', 'JPEG'), (b'\x89PNG\r\n\x1a\n', 'PNG'), (b'BM', 'BMP'),
              (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'), (b'RIFF', 'WEBP'),
              *((b'P%d' % i, 'PNM') for i in range(1, 8)))
END_MARKERS = {'JPEG': b'\xff\xd9', 'PNG': b'IEND'}


class ImageTask(NamedTuple):
    """One image to check: its path, split and class folder ('' in test/)."""
    path: str
    split: str
    label: str = ''


@dataclass(frozen=True)
class FileCheck:
    """What checking one image found: ``issues`` holds ``(code, message)`` pairs; ``preview``
    is a grey copy (long side :data:`SEARCH_SIDE`) for the near-duplicate candidate search."""
    path: str
    split: str
    label: str
    issues: Tuple[Tuple[str, str], ...] = ()
    width: int = 0
    height: int = 0
    mode: str = ''
    format: str = ''
    digest: str = ''
    preview: Optional[np.ndarray] = field(default=None, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return any(ISSUES[code] == 'error' for code, _ in self.issues)


@dataclass
class Diagnosis:
    """The doctor's result: ``findings`` (one row per file or folder and issue, paths relative
    to ``root``) and ``files`` (one row per image checked)."""
    root: str
    findings: pd.DataFrame
    files: pd.DataFrame

    @property
    def failures(self) -> int:
        """Files and folders with at least one error."""
        errors = self.findings[self.findings.severity == 'error']
        return errors.path.nunique()


class Progress:
    """Progress lines for a long doctor run, ``report``-ed at most every ``seconds``:
    ``checking files: 12,800 / 100,000 (31 s)``. A run shorter than ``seconds`` gets none."""

    def __init__(self, report: Callable[[str], None], seconds: float = PROGRESS_SECONDS):
        self.report, self.seconds = report, seconds
        self._started = self._last = time.monotonic()

    def stage(self, what: str) -> Callable[[int, int], None]:
        """``update(done, total)`` for one stage of the run."""
        def update(done: int, total: int) -> None:
            now = time.monotonic()
            if now - self._last >= self.seconds:
                self._last = now
                self.report(f'{what}: {done:,} / {total:,} ({now - self._started:.0f} s)')
        return update


# ---------------------------------------------------------------- one file

def check_file(path: str, split: str, label: str = '', max_pixels: int = MAX_IMAGE_PIXELS,
               min_size: int = DEFAULT_MIN_SIZE, preview: bool = True) -> FileCheck:
    """Read, probe and decode one image as training does; report what is wrong or converted
    (``preview``: keep a small grey copy for the near-duplicate search)."""
    try:
        data = read_image_bytes(path)
    except BadImageError as error:
        code = 'zero_byte' if _file_size(path) == 0 else 'unreadable'
        return FileCheck(path, split, label, ((code, error.reason), ))
    found = partial(FileCheck, path, split, label,
                    digest=hashlib.blake2b(data, digest_size=16).hexdigest())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            header = probe_image(data, path, max_pixels)
    except BadImageError as error:
        return found(issues=(failure_issue(data, error.reason), ))
    found = partial(found, width=header.width, height=header.height, mode=header.mode,
                    format=header.format)
    try:
        image = decode_image(data, path)
    except BadImageError as error:
        return found(issues=(failure_issue(data, error.reason), ))
    height, width = image.shape[:2]
    issues = conversion_issues(header, data) + size_issues(width, height, min_size)
    return found(issues=issues, width=width, height=height,
                 preview=grey_preview(image, SEARCH_SIDE) if preview else None)


def image_signature(data: bytes) -> Optional[str]:
    """The image format the leading bytes announce, or None."""
    for magic, name in SIGNATURES:
        if data.startswith(magic) and (name != 'WEBP' or data[8:12] == b'WEBP'):
            return name
    return None


def failure_issue(data: bytes, reason: str) -> Tuple[str, str]:
    """Classify a file that ``probe_image`` or ``decode_image`` refused."""
    if reason.startswith('decompression bomb'):
        return 'decompression_bomb', reason
    kind = image_signature(data)
    if kind is None:
        return 'not_image', 'not an image: the content matches no image format'
    marker = END_MARKERS.get(kind)
    if marker and marker not in data[-16:]:
        return 'truncated', f'truncated {kind}: the file ends before its end marker'
    return 'corrupt', f'corrupt {kind} data; the reader says: {reason}'


def conversion_issues(header: ImageHeader, data: bytes) -> Tuple[Tuple[str, str], ...]:
    """What loading converts: grayscale, alpha, palette, >8 bits, CMYK, EXIF rotation."""
    mode, bits = header.mode, bit_depth(header, data)
    found = []
    if mode in GRAY_MODES:
        found.append(('grayscale', f'grayscale ({mode}): loaded as gray RGB'))
    if mode in ALPHA_MODES:
        found.append(('alpha_dropped', f'{mode}: the alpha channel is dropped'))
    if mode in PALETTE_MODES:
        found.append(('palette', f'palette image ({mode}): colours looked up'))
    if bits > 8:
        found.append(('high_bit_depth', f'{bits}-bit ({mode}): scaled to 8 bits'))
    if mode == 'CMYK':
        found.append(('cmyk', 'CMYK: converted to RGB'))
    if header.orientation != 1:
        found.append(('exif_rotated', f'EXIF orientation {header.orientation}: loaded upright '
                      f'as {header.width} x {header.height}'))
    return tuple(found)


def bit_depth(header: ImageHeader, data: bytes) -> int:
    """Bits per channel: from the mode, or from the PNG header (PIL shows 16-bit RGB as RGB)."""
    if header.mode.startswith('I;16'):
        return 16
    if header.mode in ('I', 'F'):
        return 32
    if header.format == 'PNG' and data[12:16] == b'IHDR':
        return data[24]
    return 8


def size_issues(width: int, height: int, min_size: int) -> Tuple[Tuple[str, str], ...]:
    if min(width, height) < min_size:
        return (('tiny', f'only {width} x {height} pixels (shorter side < {min_size})'), )
    return ()


def _file_size(path: str) -> int:
    try:
        return osp.getsize(path)
    except OSError:
        return -1


# ---------------------------------------------------------------- many files

def check_files(tasks: Sequence[ImageTask], workers: Optional[int] = None,
                max_pixels: int = MAX_IMAGE_PIXELS, min_size: int = DEFAULT_MIN_SIZE,
                previews: bool = True,
                progress: Optional[Callable[[int, int], None]] = None) -> List[FileCheck]:
    """:func:`check_file` on every task, in ``workers`` processes (in this one for 1);
    ``progress(done, total)`` after each file."""
    check = partial(check_file, max_pixels=max_pixels, min_size=min_size, preview=previews)
    checks = []
    for found in parallel_map(check, list(zip(*tasks)) or [(), (), ()], workers, 64):
        checks.append(found)
        if progress is not None:
            progress(len(checks), len(tasks))
    return checks


def parallel_map(function: Callable, columns: Sequence[Sequence], workers: Optional[int],
                 chunksize: int) -> Iterator:
    """``map(function, *columns)`` in ``workers`` processes (in this one for 1), handing each
    at most ``chunksize`` calls at a time."""
    count = len(columns[0]) if columns else 0
    workers = min(workers or os.cpu_count() or 1, count)
    if workers <= 1:
        yield from map(function, *columns)
        return
    chunksize = max(1, min(chunksize, count // (8 * workers)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, *columns, chunksize=chunksize)


def duplicate_findings(checks: Sequence[FileCheck], root: str) -> List[dict]:
    """Files with identical bytes: an error when train shares them with val/test (leakage),
    a warning otherwise. Files that already fail are left out."""
    groups = defaultdict(list)
    for check in checks:
        if check.digest and not check.failed:
            groups[check.digest].append(check)
    rows = []
    for group in (group for group in groups.values() if len(group) > 1):
        splits = {check.split for check in group}
        code = 'cross_split_duplicate' if 'train' in splits and len(splits) > 1 else 'duplicate'
        paths = [_relative(check.path, root) for check in group]
        for check, path in zip(group, paths):
            others = ', '.join(other for other in paths if other != path)
            rows.append(_finding(check.path, check.split, check.label, code,
                                 f'same bytes as {others}', hash=check.digest))
    return rows


def near_duplicate_findings(checks: Sequence[FileCheck], root: str,
                            threshold: float = THRESHOLD, workers: Optional[int] = None,
                            progress: Optional[Progress] = None) -> List[dict]:
    """Pairs of different files that are resized, re-encoded or cropped copies of one image
    (byte-identical ones are :func:`duplicate_findings`): an error across splits, a warning
    within one. Each file of a pair gets a row naming the other and their similarity.

    Candidates come from the small previews of ``checks``; each candidate pair is verified on
    previews decoded again from the files, in ``workers`` processes."""
    usable = [check for check in checks if check.preview is not None and not check.failed]
    pairs = candidate_pairs([check.preview for check in usable],
                            progress=progress and progress.stage('near-duplicate search, images'))
    pairs = [(usable[a], usable[b]) for a, b in pairs if usable[a].digest != usable[b].digest]
    scores = verify_pairs([(first.path, second.path) for first, second in pairs], workers,
                          progress and progress.stage('verifying near-duplicate candidates'))
    rows = []
    for (first, second), score in zip(pairs, scores):
        if score < threshold:
            continue
        code = ('cross_split_near_duplicate' if first.split != second.split
                else 'near_duplicate')
        for check, other in ((first, second), (second, first)):
            rows.append(_finding(
                check.path, check.split, check.label, code,
                f'resized, re-encoded or cropped copy of {_relative(other.path, root)} '
                f'(similarity {score:.3f}, threshold {threshold:g})', hash=check.digest))
    return rows


def verify_pairs(pairs: Sequence[Tuple[str, str]], workers: Optional[int] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> List[float]:
    """:func:`~bioplugin.datasets.curation.near_duplicates.similarity` of each pair of image
    files (0 where one can no longer be decoded), :data:`VERIFY_BATCH` pairs per task."""
    batches = [pairs[start:start + VERIFY_BATCH] for start in range(0, len(pairs), VERIFY_BATCH)]
    scores: List[float] = []
    for found in parallel_map(verify_batch, [batches], workers, 1):
        scores += found
        if progress is not None:
            progress(len(scores), len(pairs))
    return scores


def verify_batch(pairs: Sequence[Tuple[str, str]]) -> List[float]:
    """:func:`verify_pairs` for one batch: each file is decoded once."""
    previews: Dict[str, Optional[np.ndarray]] = {}
    for path in {path for pair in pairs for path in pair}:
        try:
            previews[path] = grey_preview(decode_image(read_image_bytes(path), path))
        except BadImageError:
            previews[path] = None
    return [similarity(previews[first], previews[second])
            if previews[first] is not None and previews[second] is not None else 0.0
            for first, second in pairs]


# ---------------------------------------------------------------- folder layout

def scan_layout(data_root: str) -> Tuple[List[ImageTask], List[dict]]:
    """The images to check under train/, val/ and test/, and the folder-level findings."""
    if not osp.isdir(data_root):
        raise DatasetError(f'Data root {data_root!r} does not exist or is not a folder.')
    if not osp.isdir(osp.join(data_root, 'train')):
        raise DatasetError(f'{data_root!r} has no train/ folder; the doctor expects '
                           'train/<class>/, val/<class>/ and test/ in it.')
    tasks, findings, train_classes = _scan_labeled(data_root, 'train')
    val = osp.join(data_root, 'val')
    if osp.isdir(val):
        val_tasks, val_findings, val_classes = _scan_labeled(data_root, 'val')
        tasks += val_tasks
        findings += val_findings + _class_mismatches(val, train_classes, val_classes)
    else:
        findings.append(_finding(val, 'val', '', 'missing_val',
                                 'no val/ folder: the shipped configs validate on it'))
    test_tasks, test_findings = _scan_unlabeled(data_root, 'test')
    return tasks + test_tasks, findings + test_findings


def _scan_labeled(root: str, split: str) -> Tuple[List[ImageTask], List[dict], List[str]]:
    folder = osp.join(root, split)
    classes = class_folders(folder)
    findings = [_finding(path, split, '', 'image_outside_class',
                         f'image directly in {split}/, outside any class folder')
                for path in scan_images(folder)]
    findings += _ignored_files(folder, split, '', recursive=False)
    if not classes:
        findings.append(_finding(folder, split, '', 'no_classes', f'{split}/ has no class folders'))
    tasks = []
    for name in classes:
        images = scan_images(osp.join(folder, name), recursive=True)
        if not images:
            findings.append(_finding(osp.join(folder, name), split, name, 'empty_class',
                                     'class folder without image files'))
        tasks += [ImageTask(path, split, name) for path in images]
        findings += _ignored_files(osp.join(folder, name), split, name, recursive=True)
    return tasks, findings, classes


def _scan_unlabeled(root: str, split: str) -> Tuple[List[ImageTask], List[dict]]:
    folder = osp.join(root, split)
    if not osp.isdir(folder):
        return [], [_finding(folder, split, '', 'missing_test', f'no {split}/ folder to predict')]
    findings = [_finding(osp.join(folder, name), split, '', 'ignored_folder',
                         f'sub-folder of {split}/: prediction reads only {split}/ itself')
                for name in visible_subfolders(folder)]
    findings += _ignored_files(folder, split, '', recursive=False)
    return [ImageTask(path, split) for path in scan_images(folder)], findings


def _ignored_files(folder: str, split: str, label: str, recursive: bool) -> List[dict]:
    """Visible files that are not images by their extension."""
    visible = scan_images(folder, recursive, extensions=('', ))
    return [_finding(path, split, label, 'ignored_file', 'not an image extension: ignored')
            for path in visible if not is_image_file(osp.basename(path))]


def _class_mismatches(val: str, train_classes: List[str], val_classes: List[str]) -> List[dict]:
    only_val = [name for name in val_classes if name not in train_classes]
    missing = [name for name in train_classes if name not in val_classes]
    return ([_finding(osp.join(val, name), 'val', name, 'class_not_in_train',
                      'class folder in val/ but not in train/') for name in only_val]
            + [_finding(osp.join(val, name), 'val', name, 'class_missing_from_val',
                        'train/ has this class but val/ has no folder for it; val loading '
                        'needs the same class folders') for name in missing])


# ---------------------------------------------------------------- the whole dataset

def diagnose(data_root: str, workers: Optional[int] = None, max_pixels: int = MAX_IMAGE_PIXELS,
             min_size: int = DEFAULT_MIN_SIZE, near_threshold: Optional[float] = THRESHOLD,
             progress: Optional[Progress] = None) -> Diagnosis:
    """Check the folder layout and every image of ``data_root``; ``near_threshold`` is the
    similarity from which two images are near-duplicates (None: no such check)."""
    tasks, rows = scan_layout(data_root)
    checks = check_files(tasks, workers, max_pixels, min_size, near_threshold is not None,
                         progress and progress.stage('checking files'))
    rows += [_finding(check.path, check.split, check.label, code, message,
                      width=check.width or None, height=check.height or None, mode=check.mode,
                      hash=check.digest)
             for check in checks for code, message in check.issues]
    rows += duplicate_findings(checks, data_root)
    if near_threshold is not None:
        rows += near_duplicate_findings(checks, data_root, near_threshold, workers, progress)
    return Diagnosis(data_root, findings_frame(rows, data_root), files_frame(checks, data_root))


def findings_frame(rows: List[dict], root: str) -> pd.DataFrame:
    """Findings as a table sorted by severity, issue, split and natural path order."""
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame['path'] = [_relative(path, root) for path in frame.path]
    frame[['width', 'height']] = frame[['width', 'height']].astype('Int64')
    order = list(ISSUES)
    key = [(SEVERITIES.index(ISSUES[issue]), order.index(issue), SPLITS.index(split),
            natural_key(path)) for issue, split, path in zip(frame.issue, frame.split, frame.path)]
    return frame.iloc[sorted(range(len(frame)), key=key.__getitem__)].reset_index(drop=True)


def files_frame(checks: Sequence[FileCheck], root: str) -> pd.DataFrame:
    """One row per image checked, with its issue codes joined by ';'."""
    return pd.DataFrame(
        [{'path': _relative(c.path, root), 'split': c.split, 'class': c.label,
          'width': c.width, 'height': c.height, 'mode': c.mode, 'format': c.format,
          'hash': c.digest, 'issues': ';'.join(code for code, _ in c.issues)} for c in checks],
        columns=['path', 'split', 'class', 'width', 'height', 'mode', 'format', 'hash',
                 'issues'])


def summary_table(diagnosis: Diagnosis) -> pd.DataFrame:
    """Counts per issue (rows) and split (columns), under a first row of images scanned."""
    findings = diagnosis.findings
    counts = pd.crosstab(findings.issue, findings.split) if len(findings) else pd.DataFrame()
    counts = counts.reindex(index=[issue for issue in ISSUES if issue in counts.index],
                            columns=list(SPLITS), fill_value=0)
    scanned = diagnosis.files.split.value_counts().reindex(list(SPLITS), fill_value=0)
    table = pd.concat([scanned.to_frame('images scanned').T, counts]).astype(int)
    table['total'] = table.sum(axis=1)
    table.index.name = table.columns.name = None
    table.insert(0, 'severity', [''] + [ISSUES[issue] for issue in counts.index])
    return table


# ---------------------------------------------------------------- text

def format_findings(findings: pd.DataFrame, severities: Sequence[str] = ('error', 'warning'),
                    limit: int = 20) -> List[str]:
    """Aligned lines ``SEVERITY  path  issue  message`` for the findings of ``severities``,
    at most ``limit`` per issue code."""
    shown = findings[findings.severity.isin(severities)]
    shown = shown.groupby('issue', sort=False, group_keys=False).head(limit)
    if shown.empty:
        return []
    path_width, issue_width = shown.path.str.len().max(), shown.issue.str.len().max()
    lines, hidden = [], findings[findings.severity.isin(severities)].issue.value_counts()
    for issue, group in shown.groupby('issue', sort=False):
        lines += [f'{row.severity.upper():<7}  {row.path:<{path_width}}  '
                  f'{issue:<{issue_width}}  {row.message}' for row in group.itertuples()]
        if hidden[issue] > limit:
            lines.append(f'{"":<7}  ... and {hidden[issue] - limit} more {issue}')
    return lines


def verdict(diagnosis: Diagnosis) -> str:
    """The last line of the report."""
    if diagnosis.failures:
        return f'FAILED: {diagnosis.failures} files/folders would break training'
    return f'OK: {len(diagnosis.files)} images, no problems that would break training'


def _finding(path: str, split: str, label: str, code: str, message: str, **extra) -> dict:
    return {'path': path, 'split': split, 'class': label, 'issue': code,
            'severity': ISSUES[code], 'message': message, **extra}


def _relative(path: str, root: str) -> str:
    return osp.relpath(path, root).replace(os.sep, '/')
