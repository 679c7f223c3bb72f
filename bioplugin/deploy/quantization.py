"""Static int8 quantization of an exported fp32 ONNX file with ONNX Runtime.

QDQ format, int8 weights per output channel, uint8 activations whose ranges come from
calibration images (MinMax: the observed range of every activation). The calibration
images go through the test pipeline, so the ranges are those the model meets in use.
"""
import os
import os.path as osp
import tempfile
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from ..engine.cpu_info import cpu_flags
from .metadata import INPUT_NAME

CALIBRATION_METHODS = ('minmax', 'entropy', 'percentile')
# leading convolutions kept float32: the default (none), then the fallbacks tried in turn when
# int8 misses its agreement target (quantization error builds up from the first layers)
FLOAT_LEADING_CONVS = (0, 8, 16)


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


def leading_convolutions(graph, count: int) -> list:
    """Names of the first ``count`` Conv nodes of ``graph`` and of the Clip / Relu nodes that
    read their outputs (their activations, which int8 fuses into them)."""
    convs = [node for node in graph.node if node.op_type == 'Conv'][:count]
    outputs = {name for node in convs for name in node.output}
    return [node.name for node in convs] + [
        node.name for node in graph.node
        if node.op_type in ('Clip', 'Relu') and outputs.intersection(node.input)]


def single_images(batches: Iterable[np.ndarray]) -> list:
    """``batches`` one image at a time: the histogram calibrators (entropy, percentile)
    stack every batch's activations, so a last batch smaller than the others breaks them."""
    return [batch[index:index + 1] for batch in batches for index in range(len(batch))]


def quantize_int8(fp32_file: str, int8_file: str, batches: Iterable[np.ndarray],
                  method: str = 'minmax', reduce_range: bool = False,
                  keep_float: Sequence[str] = ('Softmax', 'BatchNormalization'),
                  keep_float_after: Sequence[str] = ('features', ),
                  float_leading_convs: int = 0) -> str:
    """Write the int8 version of ``fp32_file`` to ``int8_file``, calibrated on ``batches``
    (uint8 RGB, ``(N, 3, H, W)``). ``reduce_range`` quantizes weights to 7 bits, which avoids
    the saturation of uint8 x int8 products on x86 CPUs without VNNI at a small cost in
    accuracy. Nodes of the ``keep_float`` types stay float32: the softmax (scores need its
    precision) and the head's BatchNorm1d (rank-1 weights; a BatchNorm2d after a convolution
    is folded into it beforehand), and every node computed from a ``keep_float_after``
    tensor: the last Linear layer and the unknown score (a nearest-neighbour search over the
    training features, which 8 bits would blur). The first ``float_leading_convs``
    convolutions (with their activations) stay float32 too. Returns ``int8_file``."""
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
        excluded += leading_convolutions(model.graph, float_leading_convs)
        del model
        quantize_static(
            prepared, osp.join(scratch, 'int8.onnx'), _BatchReader(
                batches if method == 'minmax' else single_images(batches)),
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=calibration, nodes_to_exclude=excluded,
            extra_options={'CalibStridedMinMax': 1},
            calibration_providers=['CPUExecutionProvider'])
        os.replace(osp.join(scratch, 'int8.onnx'), int8_file)
    return int8_file


def quantize_checked(fp32_file: str, int8_file: str, batches: Sequence[np.ndarray],
                     check: Callable[[str], dict], min_agreement: float,
                     fallbacks: Sequence[int] = FLOAT_LEADING_CONVS,
                     log: Callable[[str], None] = print, **options) -> dict:
    """:func:`quantize_int8` with the first of ``fallbacks`` leading convolutions in float,
    checked by ``check(int8 file)`` (:func:`~bioplugin.deploy.export.compare`'s dict); while
    its ``top1_agreement`` is below ``min_agreement``, again with the next count. Keeps in
    ``int8_file`` the first variant that meets the target, else the best one (highest
    agreement, then smallest logit difference). Returns its check with ``passed``,
    ``float_leading_convs`` and ``tried`` (``[count, agreement]`` of every variant)."""
    stem, ext = osp.splitext(int8_file)
    best, tried = None, []
    for count in fallbacks:
        path = int8_file if best is None else f'{stem}.float{count}{ext}'
        quantize_int8(fp32_file, path, batches, float_leading_convs=count, **options)
        result = dict(check(path), float_leading_convs=count)
        result['passed'] = result['top1_agreement'] >= min_agreement
        tried.append([count, result['top1_agreement']])
        if len(tried) > 1 or not result['passed']:
            log(f'int8 with the first {count} convolutions in float: top-1 agreement '
                f"{result['top1_agreement']:.1%}, max |logit difference| "
                f"{result['max_abs_diff']:.2f}")
        if best is None or (result['top1_agreement'], -result['max_abs_diff']) > (
                best['top1_agreement'], -best['max_abs_diff']):
            if path != int8_file:
                os.replace(path, int8_file)
            best = result
        elif osp.exists(path):
            os.remove(path)
        if result['passed']:
            break
    return dict(best, tried=tried)
