"""Run an exported ONNX file: ONNX Runtime (a pinned dependency) or OpenVINO (optional).

Both take RGB ``uint8`` batches ``(N, 3, H, W)`` and return float32 logits ``(N, classes)``;
the bioplugin metadata is read from the file in either case.
"""
import os
import os.path as osp
import warnings
from typing import List, Optional, Sequence

import numpy as np

from ..errors import CheckpointError, ConfigError
from .metadata import INPUT_NAME, parse_metadata
from .ort_cache import drop_entry, optimized_model

BACKENDS = ('onnxruntime', 'openvino')


def _unreadable(path: str, error: Exception) -> CheckpointError:
    return CheckpointError(f'{path!r} is not a readable ONNX model (truncated or corrupt: '
                           f'{str(error).strip().splitlines()[0][:200]}); export it again with '
                           'tools/deploy/export_onnx.py.')


class OnnxRuntimeSession:
    """An ONNX Runtime CPU session (CUDA when onnxruntime-gpu is installed and asked for).

    On the CPU a file of :data:`~.ort_cache.MIN_BYTES` or more is run from its optimised copy
    in the user's cache (:mod:`~.ort_cache`: optimised once per machine, ONNX Runtime version
    and file, in a child process, and checked against the file), loaded with graph
    optimisation off and without ONNX Runtime's memory pattern. Its outputs are the default
    session's, at the default session's speed, and the session holds the weights once
    instead of about three times: a ResNeXt101 session at batch 8 peaks 0.47 GiB above its
    imports instead of 0.96 GiB (docs/speed.md, "ONNX Runtime's memory"). Where no copy can
    be made or loaded, the file is loaded with ONNX Runtime's defaults (with a warning). The
    other options measured (no memory arena, no prepacking, loading from bytes) do not lower
    the peak, and a lower optimisation level (``ORT_ENABLE_EXTENDED``: no blocked
    convolutions) lowers it as much but runs about 1.4 to 1.5 times slower."""

    def __init__(self, path: str, threads: Optional[int] = None, device: str = 'cpu'):
        import onnxruntime
        providers = ['CPUExecutionProvider']
        if device.startswith('cuda'):
            if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
                raise ConfigError('This onnxruntime has no CUDA support; install '
                                  'onnxruntime-gpu or run on the CPU.')
            providers.insert(0, 'CUDAExecutionProvider')
        self.optimized_file, problem = (optimized_model(path) if len(providers) == 1
                                        else (None, ''))
        self.session = None
        if self.optimized_file:
            try:
                self.session = onnxruntime.InferenceSession(
                    self.optimized_file, self._options(threads, optimized=True),
                    providers=providers)
            except Exception as error:  # onnxruntime raises its own untyped errors
                drop_entry(self.optimized_file)
                self.optimized_file, problem = None, str(error).strip()[:300]
        if self.session is None:
            try:
                self.session = onnxruntime.InferenceSession(path, self._options(threads),
                                                            providers=providers)
            except Exception as error:  # onnxruntime raises its own untyped errors
                raise _unreadable(path, error) from None
            if problem:
                warnings.warn(f'ONNX Runtime optimised {osp.basename(path)} in this process '
                              '(about three times its weights in memory while loading): no '
                              f'optimised copy in the cache ({problem}).')
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, path)

    @staticmethod
    def _options(threads: Optional[int], optimized: bool = False):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if optimized:
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
            # no second, pre-planned activation buffer next to the arena's: 90 MiB less for
            # ResNeXt101 at batch 8, no slower (docs/speed.md)
            options.enable_mem_pattern = False
        return options

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(['logits'], {INPUT_NAME: images})[0]

    def run_outputs(self, images: np.ndarray, names: Sequence[str]) -> List[np.ndarray]:
        return self.session.run(list(names), {INPUT_NAME: images})


class OpenVinoSession:
    """The same ONNX file compiled by OpenVINO for the CPU (``pip install openvino``)."""

    def __init__(self, path: str, threads: Optional[int] = None, device: str = 'cpu'):
        try:
            import openvino
        except ImportError:
            raise ConfigError('--backend openvino needs OpenVINO: pip install openvino '
                              '(or use the default backend onnxruntime).') from None
        if device != 'cpu':
            raise ConfigError('The OpenVINO backend runs on the CPU here; drop the device.')
        core = openvino.Core()
        try:
            model = core.read_model(path)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses of its own
            raise _unreadable(path, error) from None
        config = {'INFERENCE_NUM_THREADS': threads} if threads else {}
        self.compiled = core.compile_model(model, 'CPU', config)
        self.request = self.compiled.create_infer_request()
        self.metadata = parse_metadata(_onnx_metadata(path), path)

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.run_outputs(images, ['logits'])[0]

    def run_outputs(self, images: np.ndarray, names: Sequence[str]) -> List[np.ndarray]:
        results = self.request.infer({INPUT_NAME: images})
        return [np.asarray(results[self.compiled.output(name)]) for name in names]


def _onnx_metadata(path: str) -> dict:
    import onnx
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise _unreadable(path, error) from None
    return {prop.key: prop.value for prop in model.metadata_props}


def _check_file(path: str) -> None:
    if not osp.isfile(path):
        raise CheckpointError(f'ONNX file {path!r} does not exist.')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'{path!r} is empty (an interrupted export?); export it again '
                              'with tools/deploy/export_onnx.py.')


def read_metadata(path: str) -> dict:
    """The bioplugin metadata of ``path`` without building a session (no graph
    optimisation, no weight copies)."""
    _check_file(path)
    return parse_metadata(_onnx_metadata(path), path)


def open_runtime(path: str, backend: str = 'onnxruntime', threads: Optional[int] = None,
                 device: str = 'cpu'):
    """A session over ``path`` with ``.metadata``, ``.run(images) -> logits`` and
    ``.run_outputs(images, names) -> [arrays]``."""
    if backend not in BACKENDS:
        raise ConfigError(f'Unknown ONNX backend {backend!r}; choose one of '
                          f'{", ".join(BACKENDS)}.')
    _check_file(path)
    session_type = OnnxRuntimeSession if backend == 'onnxruntime' else OpenVinoSession
    return session_type(path, threads, device)


def is_onnx_file(path: str) -> bool:
    """Whether a model path names an exported ONNX file (chosen by its extension)."""
    return str(path).lower().endswith('.onnx')
