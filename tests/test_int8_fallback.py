"""int8 export of a depthwise-convolution backbone: when the quantized file misses its
agreement target, the first convolutions are kept in float in turn and the export keeps, and
reports, the variant it reached."""
import os
import os.path as osp

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from mmengine.config import Config

from bioplugin.deploy.export import ExportableClassifier, export_fp32
from bioplugin.deploy.quantization import FLOAT_LEADING_CONVS, quantize_checked
from bioplugin.models import build_model

from helpers import TINY_CONFIG


@pytest.fixture(scope='module')
def mobilenet(tmp_path_factory):
    """A MobileNetV2 (depthwise convolutions, ReLU6) classifier in fp32 ONNX, random weights,
    with random calibration and check images."""
    cfg = Config.fromfile(TINY_CONFIG)
    cfg.model.backbone = dict(type='MobileNetV2', widen_factor=0.35)
    cfg.model.neck = dict(type='GlobalAveragePooling')
    cfg.model.head.in_channels = 1280
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = str(tmp_path_factory.mktemp('mobilenet') / 'mobilenet.onnx')
    export_fp32(ExportableClassifier(model).eval(), path, 224, 224, None)
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 224, 224), dtype=np.uint8)
    return path, [images[:4], images[4:]]


def logits(path, images):
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    return session.run(['logits'], {'image': images})[0]


def quantize(mobilenet, tmp_path, min_agreement):
    fp32_file, batches = mobilenet
    images = np.concatenate(batches)
    reference = logits(fp32_file, images)

    def check(path):
        int8 = logits(path, images)
        return dict(images=len(images), max_abs_diff=float(np.abs(int8 - reference).max()),
                    top1_agreement=float((int8.argmax(1) == reference.argmax(1)).mean()))

    int8_file = str(tmp_path / 'mobilenet_int8.onnx')
    lines = []
    return int8_file, quantize_checked(fp32_file, int8_file, batches, check, min_agreement,
                                       log=lines.append), lines


def float_convs(path):
    """Per Conv node in graph order: True when its weight is float (not dequantized)."""
    graph = onnx.load(path).graph
    dequantized = {out for node in graph.node if node.op_type == 'DequantizeLinear'
                   for out in node.output}
    return [node.input[1] not in dequantized for node in graph.node if node.op_type == 'Conv']


def test_below_target_tries_leading_convolutions_in_float_and_reports(mobilenet, tmp_path):
    int8_file, result, lines = quantize(mobilenet, tmp_path, min_agreement=1.01)
    assert not result['passed']
    assert [count for count, _ in result['tried']] == list(FLOAT_LEADING_CONVS)
    assert len(lines) == len(FLOAT_LEADING_CONVS)  # each variant's agreement is printed
    best = max(agreement for _, agreement in result['tried'])
    assert result['top1_agreement'] == best
    assert os.listdir(tmp_path) == [osp.basename(int8_file)]  # the other variants are gone
    kept, floats = result['float_leading_convs'], float_convs(int8_file)
    assert floats[:kept] == [True] * kept and not any(floats[kept:])


def test_a_variant_that_meets_the_target_is_the_only_one_tried(mobilenet, tmp_path):
    int8_file, result, lines = quantize(mobilenet, tmp_path, min_agreement=0)
    assert result['passed'] and result['float_leading_convs'] == 0
    assert len(result['tried']) == 1 and not lines
    assert not any(float_convs(int8_file))
