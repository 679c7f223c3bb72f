"""ONNX Runtime's CPU graph optimisation done once per machine and model, kept in the user's
cache, so a session holds the weights once.

Creating a session at ONNX Runtime's default level (``ORT_ENABLE_ALL``) reorders every
convolution's weights into blocked (NCHWc) copies while the file's own weights are still
held: a ResNeXt101 session peaks at about three times its weights (docs/speed.md, "ONNX
Runtime's memory"). Loading a model that was already optimised, with optimisation disabled,
holds them once and runs as fast. The optimised model is specific to the CPU's instruction
sets and ONNX Runtime's version, so it is a cache entry, never a file beside the export:

- the key is the source file (real path, size, inode, modification and change times, so a
  file written again is another entry), the ONNX Runtime version and the CPU (vendor, model,
  family / model / stepping, all instruction-set flags);
- :func:`optimized_model` makes a missing entry in a child process that imports only numpy
  and ONNX Runtime (the caller's peak memory does not see the optimisation), which saves the
  optimised graph with its weights as external data, then checks it: on random inputs every
  output of the optimised model at ``ORT_DISABLE_ALL`` must match the source file's session
  at the default level within :data:`TOLERANCE`, or the entry is dropped and the source is
  used as before;
- entries live in ``$XDG_CACHE_HOME/bioplugin/onnxruntime/`` (``~/.cache/...`` without it);
  an entry of the same source path with another key is removed when its successor is made,
  and only the :data:`CACHE_ENTRIES` most recently used are kept (each is as large as its
  model);
- files under :data:`MIN_BYTES` are left alone (little to save), and
  ``BIOPLUGIN_ONNX_CACHE=0`` turns the cache off.

Run as a script (``python ort_cache.py SOURCE TARGET``) this module is the child: it imports
nothing but the standard library, numpy and ONNX Runtime.
"""
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

CACHE_ENTRIES = 4
MIN_BYTES = 32 << 20
TOLERANCE = 1e-5
FORMAT = 1
MODEL_NAME = 'model.onnx'
ENTRY_NAME = 'entry.json'


def cache_dir() -> str:
    from bioplugin.fileio import user_cache_dir  # absolute: see cache_key
    return user_cache_dir('onnxruntime')


def cache_key(path: str) -> dict:
    """What an optimised model holds for: this source file, ONNX Runtime and CPU."""
    import onnxruntime

    # absolute: this module also runs as a script, outside the package
    from bioplugin.engine.cpu_info import cpu_flags, cpu_name
    stat = os.stat(path)
    flags = ' '.join(sorted(cpu_flags()))
    return {'format': FORMAT, 'source': osp.realpath(path), 'size': stat.st_size,
            'inode': stat.st_ino, 'mtime_ns': stat.st_mtime_ns, 'ctime_ns': stat.st_ctime_ns,
            'onnxruntime': onnxruntime.__version__,
            'cpu': cpu_name(),
            'cpu_flags': hashlib.sha256(flags.encode()).hexdigest()[:16]}


def _entry_dir(key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return osp.join(cache_dir(), digest)


def _read_entry(directory: str) -> Optional[dict]:
    try:
        with open(osp.join(directory, ENTRY_NAME), encoding='utf-8') as file:
            return json.load(file)
    except (OSError, ValueError):
        return None


def drop_entry(model_file: str) -> None:
    """Remove the cache entry of an optimised ``model_file`` (one that did not load)."""
    shutil.rmtree(osp.dirname(model_file), ignore_errors=True)


def _evict(kept: str, source: str) -> None:
    """Drop the other entries of ``source`` and all but the newest :data:`CACHE_ENTRIES`."""
    entries = []
    for name in os.listdir(cache_dir()):
        directory = osp.join(cache_dir(), name)
        entry = _read_entry(directory)
        if name.startswith('.new-') and time.time() - osp.getmtime(directory) > 86400:
            shutil.rmtree(directory, ignore_errors=True)  # left by a process that was killed
        if directory == kept or entry is None:
            continue
        if entry.get('key', {}).get('source') == source:
            shutil.rmtree(directory, ignore_errors=True)
        else:
            entries.append((osp.getmtime(osp.join(directory, ENTRY_NAME)), directory))
    for _, directory in sorted(entries)[:max(0, len(entries) + 1 - CACHE_ENTRIES)]:
        shutil.rmtree(directory, ignore_errors=True)


def _make_entry(path: str, key: dict, directory: str) -> str:
    """Optimise ``path`` in a child process into a new entry ``directory``; '' or why not."""
    os.makedirs(cache_dir(), exist_ok=True)
    staging = tempfile.mkdtemp(dir=cache_dir(), prefix='.new-')
    try:
        child = subprocess.run([sys.executable, osp.abspath(__file__), path,
                                osp.join(staging, MODEL_NAME)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            lines = (child.stderr.strip() or child.stdout.strip() or 'no output').splitlines()
            return lines[-1][:300]
        with open(osp.join(staging, ENTRY_NAME), 'w', encoding='utf-8') as file:
            json.dump({'key': key, 'check': json.loads(child.stdout.strip().splitlines()[-1])},
                      file, indent=1)
        try:
            os.rename(staging, directory)
        except OSError:  # another process made it meanwhile
            if _read_entry(directory) is None:
                raise
        _evict(directory, key['source'])
        return ''
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def optimized_model(path: str) -> Tuple[Optional[str], str]:
    """``(file, '')``: the optimised copy of ``path`` for this machine, made now if missing,
    to be loaded with ``ORT_DISABLE_ALL``; ``(None, '')`` where the cache does not apply (a
    small file, the cache turned off); ``(None, why)`` where no copy could be made."""
    if (os.environ.get('BIOPLUGIN_ONNX_CACHE', '1') == '0' or not osp.isfile(path)
            or osp.getsize(path) < MIN_BYTES):
        return None, ''
    key = cache_key(path)
    directory = _entry_dir(key)
    model_file = osp.join(directory, MODEL_NAME)
    entry = _read_entry(directory)
    if entry is not None and entry.get('key') == key and osp.isfile(model_file):
        try:
            os.utime(osp.join(directory, ENTRY_NAME))  # most recently used
        except OSError:  # a read-only cache still serves
            pass
        return model_file, ''
    try:
        if osp.isdir(directory):  # an entry left half-written or damaged
            shutil.rmtree(directory)
        problem = _make_entry(path, key, directory)
    except OSError as error:
        problem = f'cannot write {cache_dir()}: {error}'
    return (None, problem) if problem else (model_file, '')


def _random_feeds(session, rng) -> dict:
    import numpy as np
    feeds = {}
    for graph_input in session.get_inputs():
        shape = [dim if isinstance(dim, int) else 2 for dim in graph_input.shape]
        if graph_input.type == 'tensor(uint8)':
            feeds[graph_input.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            feeds[graph_input.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def optimize(source: str, target: str) -> dict:
    """Save ``source`` optimised at the default level as ``target`` (weights in
    ``target.data``) and check the saved model against the source's session."""
    import numpy as np
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = target
    options.add_session_config_entry(
        'session.optimized_model_external_initializers_file_name',
        osp.basename(target) + '.data')
    session = onnxruntime.InferenceSession(source, options,
                                           providers=['CPUExecutionProvider'])
    feeds = _random_feeds(session, np.random.default_rng(0))
    expected = session.run(None, feeds)
    del session
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    optimized = onnxruntime.InferenceSession(target, options,
                                             providers=['CPUExecutionProvider'])
    difference = max(float(np.max(np.abs(got - want), initial=0.0))
                     for got, want in zip(optimized.run(None, feeds), expected))
    scale = max(1.0, max(float(np.max(np.abs(want), initial=0.0)) for want in expected))
    if not difference <= TOLERANCE * scale:  # also NaN
        raise SystemExit(f'the optimised model differs from the file by {difference:g}')
    return {'max_difference': difference, 'outputs': len(expected)}


if __name__ == '__main__':
    print(json.dumps(optimize(sys.argv[1], sys.argv[2])))
