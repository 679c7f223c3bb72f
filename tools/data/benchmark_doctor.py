"""Wall time and peak memory of the dataset doctor on many generated images.

    python tools/data/benchmark_doctor.py --images 100000
    python tools/data/benchmark_doctor.py --images 10000 --against /tmp/bioplugin-9e64a80

Writes ``--images`` random-texture images (grey PNG of ``--size``, by default 64x64 px: as large
as the doctor's previews, so they take the most memory) into train/<class>/, val/<class>/ and
test/ of a temporary folder, with a half-size, a JPEG-quality-60 and a 5 %-cropped copy of
``--planted`` of them in another split, and runs the doctor (``diagnose``, near-duplicate check
on) on it in a fresh process per source tree: this one and each ``--against`` tree (a checkout
of another version, e.g. ``git archive <commit> | tar -x -C DIR``). Prints the CPU (model,
cores, instruction sets) and, per tree, the seconds, the process's peak memory (VmHWM; the
imports alone take about 0.75 GB), its largest worker's, the peak of the process with the
pages only its workers hold (sampled) and how many planted copies were found. A benchmark,
not a test: nothing fails on a slow machine.
"""
import argparse
import json
import os
import os.path as osp
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import cv2
import numpy as np

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TOOLS)
CLASSES = 10
SIZE = (40, 48)  # (height, width) of a generated image by default
SPLITS = (('train', 0.8), ('val', 0.1), ('test', 0.1))
SAMPLE_SECONDS = 0.2  # how often the memory of the doctor and its workers is read


def texture(rng: np.random.Generator, size: Tuple[int, int] = SIZE) -> np.ndarray:
    """A grey ``uint8`` image of smooth random detail at two scales, different per draw."""
    noise = rng.normal(size=size).astype(np.float32)
    image = 1.2 * cv2.GaussianBlur(noise, (0, 0), 2.0) + 0.4 * cv2.GaussianBlur(noise, (0, 0), 1.0)
    return np.clip(128 + 60 * image / image.std(), 0, 255).astype(np.uint8)


def write_dataset(root: str, images: int, planted: int, seed: int = 0,
                  size: Tuple[int, int] = SIZE) -> List[Tuple[str, str]]:
    """``images`` textures in ``root``'s splits, plus copies (see ``copies_of`` in
    ``near_duplicate_margin.py``) of the first ``planted`` train images in val/ and test/.
    Returns the ``(original, copy)`` pairs, relative to ``root``."""
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from near_duplicate_margin import copies_of
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0] + [round(share * images) for _, share in SPLITS])
    bounds[-1] = images
    originals, pairs = [], []
    for (split, _), start, stop in zip(SPLITS, bounds[:-1], bounds[1:]):
        for index in range(start, stop):
            folder = split if split == 'test' else osp.join(split, str(index % CLASSES))
            path = osp.join(folder, f'img_{index}.png')
            image = texture(rng, size)
            _write(osp.join(root, path), image)
            if split == 'train' and len(originals) < planted:
                originals.append((path, image))
    for number, (original, image) in enumerate(originals):
        for kind, copy in copies_of(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)).items():
            folder = 'test' if number % 2 else osp.join('val', str(number % CLASSES))
            path = osp.join(folder, f'copy_{number}_{kind.split()[0]}.png')
            _write(osp.join(root, path), copy)
            pairs.append((original, path))
    return pairs


def _write(path: str, image: np.ndarray) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f'could not write {path}')


def run_doctor(tree: str, root: str, workers: int) -> Dict:
    """The doctor of the source tree ``tree`` on ``root`` in a fresh process: its
    measurements (see :func:`child`) and ``total_mib``, the most memory the process and its
    workers held together (:func:`tree_memory_mib`), sampled every :data:`SAMPLE_SECONDS`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [tree] + [part for part in os.environ.get('PYTHONPATH', '').split(os.pathsep) if part]))
    command = [sys.executable, osp.abspath(__file__), '--child', tree, root, str(workers)]
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        process, total = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True), 0.0
        while process.poll() is None:
            total = max(total, tree_memory_mib(process.pid))
            time.sleep(SAMPLE_SECONDS)
        out.seek(0)
        err.seek(0)
        if process.returncode:
            return dict(error=(err.read().strip().splitlines() or ['no output'])[-1])
        return dict(json.loads(out.read().strip().splitlines()[-1]), total_mib=total)


def tree_memory_mib(pid: int) -> float:
    """Resident memory of process ``pid`` plus the pages only its descendants hold (what
    they share with it or each other counted once), in MiB; 0 where ``/proc`` does not
    tell."""
    total, pending = 0, [(pid, ('Rss:', ))]
    while pending:
        current, fields = pending.pop()
        try:
            with open(f'/proc/{current}/smaps_rollup') as rollup:
                total += sum(int(line.split()[1]) for line in rollup if line.startswith(fields))
            for task in os.listdir(f'/proc/{current}/task'):
                with open(f'/proc/{current}/task/{task}/children') as children:
                    pending += [(int(child), ('Private_Clean:', 'Private_Dirty:'))
                                for child in children.read().split()]
        except (OSError, ValueError):  # ended meanwhile, or no such file here
            continue
    return total / 1024  # kB


def child(tree: str, root: str, workers: int) -> None:
    """Import the doctor from ``tree``, diagnose ``root`` and print one JSON line: seconds,
    peak memory (this process, after the imports, the largest worker) in MiB, and the
    near-duplicate pairs found."""
    import bioplugin
    from bioplugin.datasets.curation.doctor import diagnose
    if not osp.abspath(bioplugin.__file__).startswith(osp.abspath(tree) + os.sep):
        raise RuntimeError(f'bioplugin comes from {bioplugin.__file__}, not from {tree}')
    sys.path.insert(0, TOOLS)
    from benchmarking.common import peak_rss_mib
    imports = peak_rss_mib()
    start = time.perf_counter()
    findings = diagnose(root, workers=workers).findings
    seconds = time.perf_counter() - start
    near = findings[findings.issue.str.contains('near_duplicate')]
    pairs = sorted({tuple(sorted((path, message.split(' copy of ')[1].split(' (')[0])))
                    for path, message in zip(near.path, near.message)})
    print(json.dumps(dict(
        seconds=seconds, peak_mib=peak_rss_mib(), imports_mib=imports,
        worker_peak_mib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        pairs=pairs)))


def cpu_line() -> str:
    """``CPU: <model>, <n> cores; AVX2 yes, AVX-512 ...`` as ``tools/benchmark.py`` prints it."""
    sys.path.insert(0, TOOLS)
    from benchmarking.common import cpu_features, describe_cpu
    from bioplugin.engine.cpu_info import cpu_name
    return (f'CPU: {cpu_name()}, {os.cpu_count()} cores; '
            f'{describe_cpu(cpu_features())}')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=20000,
                        help='generated images (default: %(default)s)')
    parser.add_argument('--planted', type=int, default=6,
                        help='images copied three times into another split (default: %(default)s)')
    parser.add_argument('--size', default='64x64', metavar='WxH',
                        help='pixels of a generated image (default: %(default)s)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help="the doctor's --workers (default: one per CPU)")
    parser.add_argument('--against', nargs='*', default=[], metavar='TREE',
                        help='other source trees to run side by side (their bioplugin/)')
    parser.add_argument('--keep', metavar='DIR', help='write the images here and keep them')
    args = parser.parse_args(argv)
    trees = [REPO] + [osp.abspath(tree) for tree in args.against]
    print(cpu_line())
    print(f'Python {platform.python_version()}, numpy {np.__version__}, OpenCV '
          f'{cv2.__version__}; load average {os.getloadavg()[0]:.1f}', flush=True)
    with tempfile.TemporaryDirectory(prefix='doctor_benchmark_') as scratch:
        root = args.keep or osp.join(scratch, 'data')
        start = time.perf_counter()
        width, height = (int(side) for side in args.size.split('x'))
        planted = write_dataset(root, args.images, args.planted, size=(height, width))
        print(f'{args.images:,} images ({args.size} px) + {len(planted)} planted copies '
              f'written in {time.perf_counter() - start:.0f} s; doctor with {args.workers} '
              'workers:', flush=True)
        planted_set = {tuple(sorted(pair)) for pair in planted}
        groups = {path: original for original, copy in planted for path in (original, copy)}
        for tree in trees:
            found = run_doctor(tree, root, args.workers)
            if 'error' in found:
                print(f'  {tree}: failed: {found["error"]}', flush=True)
                continue
            pairs = {tuple(pair) for pair in found['pairs']}
            strays = [pair for pair in pairs if groups.get(pair[0], pair[0]) !=
                      groups.get(pair[1], pair[1])]
            print(f'  {tree}: {found["seconds"]:.1f} s, peak {found["peak_mib"]:,.0f} MiB '
                  f'(imports {found["imports_mib"]:,.0f} MiB, largest worker '
                  f'{found["worker_peak_mib"]:,.0f} MiB, with its workers\' own pages '
                  f'{found["total_mib"]:,.0f} MiB); planted copies found '
                  f'{len(planted_set & pairs)}/{len(planted_set)}, pairs between different '
                  f'images {len(strays)}; load average {os.getloadavg()[0]:.1f}', flush=True)
    return 0


if __name__ == '__main__':
    if sys.argv[1:2] == ['--child']:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
