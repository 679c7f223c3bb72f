"""Static int8 quantization of an exported fp32 ONNX file with ONNX Runtime.

QDQ format, int8 weights per output channel, uint8 activations whose ranges come from
calibration images (MinMax: the observed range of every activation). The calibration
images go through the test pipeline, so the ranges are those the model meets in use.
"""
import os
import os.path as osp
import tempfile
from typing import Iterable, Optional, Sequence

import numpy as np

from ..engine.cpu_info import cpu_flags
from .metadata import INPUT_NAME

CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')


class _BatchReader:
    """ONNX Runtime's calibration reader over uint8 RGB batches, read a window at a time
    (``CalibStridedMinMax``: ranges are merged window by window, so memory holds the
    activations of one batch, not of every calibration image)."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self.batches = list(batches)
        self.set_range(0, len(self.batches))

    def __len__(self):
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._window = iter(self.batches[start_index:end_index])

    def get_next(self):
        batch = next(self._window, None)
        return None if batch is None else {INPUT_NAME: batch}


def lacks_vnni(flags: Optional[set] = None) -> bool:
    """True on an x86 CPU without VNNI (AVX-512 VNNI, AVX-VNNI or AMX int8), where ONNX
    Runtime's uint8 x int8 kernels add pairs of products in 16 bits and 8-bit weights can
    saturate; 7-bit weights (``reduce_range``) cannot."""
    flags = cpu_flags() if flags is None else flags
    x86 = bool(flags & {'sse2', 'avx2'})
    return x86 and not flags & {'avx512_vnni', 'avx_vnni', 'amx_int8'}


def downstream_nodes(graph, tensors: Sequence[str]) -> list:
    """Names of the nodes that read ``tensors`` or anything computed from them (the graph's
    nodes are in topological order)."""
    reached, names = set(tensors), []
    for node in graph.node:
        if reached.intersection(node.input):
            reached.update(node.output)
            names.append(node.name)
    return names


def quantize_int8(fp32_file: str, int8_file: str, batches: Iterable[np.ndarray],
                  method: str = 'minmax', reduce_range: bool = False,
                  keep_float: Sequence[str] = ('Softmax', 'BatchNormalization'),
                  keep_float_after: Sequence[str] = ('features', )) -> str:
    """Write the int8 version of ``fp32_file`` to ``int8_file``, calibrated on ``batches``
    (uint8 RGB, ``(N, 3, H, W)``). ``reduce_range`` quantizes weights to 7 bits, which avoids
    the saturation of uint8 x int8 products on x86 CPUs without VNNI at a small cost in
    accuracy. Nodes of the ``keep_float`` types stay float32: the softmax (scores need its
    precision) and the head's BatchNorm1d (rank-1 weights; a BatchNorm2d after a convolution
    is folded into it beforehand), and every node computed from a ``keep_float_after``
    tensor: the last Linear layer and the unknown score (a nearest-neighbour search over the
    training features, which 8 bits would blur). Returns ``int8_file``."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    calibration = {'minmax': CalibrationMethod.MinMax, 'entropy': CalibrationMethod.Entropy,
                   'percentile': CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(dir=osp.dirname(osp.abspath(int8_file))) as scratch:
        prepared = osp.join(scratch, 'prepared.onnx')
        # shape inference and graph fusions (Conv + BatchNorm ...) before ranges are observed
        quant_pre_process(fp32_file, prepared, skip_symbolic_shape=True)
        import onnx
        model = onnx.load(prepared)
        excluded = [node.name for node in model.graph.node if node.op_type in keep_float]
        excluded += downstream_nodes(model.graph, keep_float_after)
        del model
        quantize_static(
            prepared, osp.join(scratch, 'int8.onnx'), _BatchReader(batches),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibration, nodes_to_exclude=excluded,
            extra_options={'CalibStridedMinMax': 1},
            calibration_providers=['CPUExecutionProvider'])
        os.replace(osp.join(scratch, 'int8.onnx'), int8_file)
    return int8_file
