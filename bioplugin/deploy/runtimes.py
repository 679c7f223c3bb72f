"""Run an exported ONNX file: ONNX Runtime (a pinned dependency) or OpenVINO (optional).

Both take RGB ``uint8`` batches ``(N, 3, H, W)`` and return float32 logits ``(N, classes)``;
the bioplugin metadata is read from the file in either case.
"""
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np

from ..errors import CheckpointError, ConfigError
from .metadata import INPUT_NAME, parse_metadata

BACKENDS = ('onnxruntime', 'openvino')


def _unreadable(path: str, error: Exception) -> CheckpointError:
    return CheckpointError(f'{path!r} is not a readable ONNX model (truncated or corrupt: '
                           f'{str(error).strip().splitlines()[0][:200]}); export it again with '
                           'tools/deploy/export_onnx.py.')


class OnnxRuntimeSession:
    """An ONNX Runtime CPU session (CUDA when onnxruntime-gpu is installed and asked for), with
    ONNX Runtime's default options: none of those measured (no memory arena, no prepacking,
    initializers outside the arena, loading from bytes) lowers its peak memory on a
    self-contained file (docs/speed.md, "ONNX Runtime's memory")."""

    def __init__(self, path: str, threads: Optional[int] = None, device: str = 'cpu'):
        import onnxruntime
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ['CPUExecutionProvider']
        if device.startswith('cuda'):
            if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
                raise ConfigError('This onnxruntime has no CUDA support; install '
                                  'onnxruntime-gpu or run on the CPU.')
            providers.insert(0, 'CUDAExecutionProvider')
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise _unreadable(path, error) from None
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, path)

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
