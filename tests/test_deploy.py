"""ONNX export (fp32 and int8), prediction with the exported file through tools/test.py and
BioClassifier, the standalone numpy + ONNX Runtime predictor, and every bad input."""
import glob
import os.path as osp
import shutil
import subprocess
import sys

import cv2
import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
import torch
from mmengine.dataset import default_collate

from bioplugin.apis import BioClassifier, load_config
from bioplugin.apis.image_inputs import ImageListDataset
from bioplugin.models import load_trained_model
from bioplugin.deploy import export_onnx, parse_metadata
from bioplugin.errors import CheckpointError, ConfigError
from helpers import GOLDEN, REPO, TINY_CONFIG, run_tool, tool_main

CHECKPOINT = osp.join(GOLDEN, 'tiny_epoch_2.pth')
DATA = osp.join(GOLDEN, 'data')


def val_images():
    return sorted(glob.glob(osp.join(DATA, 'val', '*', '*.jpg')))


def test_images():
    return sorted(glob.glob(osp.join(DATA, 'test', '*.jpg')))


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """The golden tiny checkpoint exported by the tool, fp32 and int8."""
    out = tmp_path_factory.mktemp('onnx')
    status, stdout, stderr = tool_main(
        'deploy/export_onnx.py', TINY_CONFIG, CHECKPOINT, '--out', out / 'tiny.onnx', '--int8',
        '--data-root', DATA, '--work-dir', out)
    assert status == 0, stderr
    return dict(fp32=str(out / 'tiny.onnx'), int8=str(out / 'tiny_int8.onnx'), out=out,
                stdout=stdout)


def tiny_config(tmp_path):
    return load_config(TINY_CONFIG, data_root=DATA, work_dir=str(tmp_path))


def pipeline_batch(paths):
    """The config's test pipeline on ``paths``, collated: BGR uint8 images."""
    cfg = load_config(TINY_CONFIG)
    dataset = ImageListDataset(paths, cfg.test_dataloader.dataset.pipeline)
    return default_collate([dataset[i] for i in range(len(dataset))])


def read_metadata(path):
    return parse_metadata({p.key: p.value for p in onnx.load(path).metadata_props}, path)


def onnx_logits(path, batch):
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    images = np.ascontiguousarray(batch['inputs'].flip(1).numpy())  # BGR -> RGB
    return session.run(['logits'], {'image': images})[0]


def test_export_reports_its_check(exported):
    assert 'max |logit difference|' in exported['stdout']
    assert 'int8 vs fp32 on 9 val images' in exported['stdout']


def test_fp32_onnx_logits_match_pytorch(exported, tmp_path):
    model, classes = load_trained_model(tiny_config(tmp_path), CHECKPOINT)
    model.eval()
    batch = pipeline_batch(val_images())
    with torch.no_grad():
        expected = model(model.data_preprocessor(batch, False)['inputs'], mode='tensor').numpy()
    actual = onnx_logits(exported['fp32'], batch)
    assert np.abs(actual - expected).max() <= 1e-4
    assert (actual.argmax(1) == expected.argmax(1)).all()
    metadata = read_metadata(exported['fp32'])
    assert metadata['classes'] == list(classes)
    assert metadata['input'] == dict(name='image', dtype='uint8', layout='NCHW', color='RGB',
                                     height=224, width=224)
    assert metadata['preprocessing'] == [
        dict(op='resize_edge', edge='short', size=256, interpolation='bilinear'),
        dict(op='center_crop', width=224, height=224)]


def test_dynamic_batch(exported):
    session = onnxruntime.InferenceSession(exported['fp32'], providers=['CPUExecutionProvider'])
    for size in (1, 5):
        logits, scores, features = session.run(
            None, {'image': np.zeros((size, 3, 224, 224), np.uint8)})
        assert logits.shape == (size, 3) and np.allclose(scores.sum(1), 1, atol=1e-5)
        assert features.shape == (size, 16)  # the tiny head's hidden width


def read_csv(path):
    return pd.read_csv(path, dtype=str)


@pytest.mark.parametrize('split_args', [('--csv', 'test.csv', '--topk', '3'),
                                        ('--csv', 'val.csv', '--split', 'val', '--tta')])
def test_csv_from_onnx_matches_csv_from_checkpoint(exported, tmp_path, split_args):
    frames = []
    for model_file in (CHECKPOINT, exported['fp32']):
        work_dir = tmp_path / osp.basename(model_file)
        args = [a if not a.endswith('.csv') else work_dir / a for a in split_args]
        status, _, stderr = tool_main('test.py', TINY_CONFIG, model_file, *args,
                                      '--data-root', DATA, '--work-dir', work_dir, '--fp32')
        assert status == 0, stderr
        frames.append(read_csv(args[1]))
    from_checkpoint, from_onnx = frames
    assert list(from_onnx.columns) == list(from_checkpoint.columns)
    assert list(from_onnx.columns[:2]) == ['image_name', 'pred_label']
    scores = [c for c in from_onnx.columns if 'score' in c]
    labels = [c for c in from_onnx.columns if c not in scores]
    pd.testing.assert_frame_equal(from_onnx[labels], from_checkpoint[labels])
    np.testing.assert_allclose(from_onnx[scores].astype(float), from_checkpoint[scores].astype(float),
                               atol=1e-4, rtol=0)


def test_an_onnx_model_needs_none_of_the_configs_custom_imports(exported, tmp_path):
    """A config whose custom_imports name a backbone package that is not installed predicts
    with the exported file (the graph holds the model) and says what it left out; with the
    checkpoint, which needs that code, it is one sentence."""
    config = tmp_path / 'custom_backbone.py'
    config.write_text(f'_base_ = [{TINY_CONFIG!r}]\n'
                      "custom_imports = dict(imports=['bioplugin', 'specimen_backbones_x'], "
                      'allow_failed_imports=False)\n')
    # a process of its own: the warning goes to the console MMEngine's logger writes to
    result = run_tool(osp.join('tools', 'test.py'), str(config), exported['fp32'], '--csv',
                      str(tmp_path / 'p.csv'), '--data-root', DATA, '--work-dir', str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(read_csv(tmp_path / 'p.csv')) > 0
    assert "'specimen_backbones_x' cannot be imported" in result.stdout + result.stderr
    status, _, stderr = tool_main('test.py', config, CHECKPOINT, '--data-root', DATA,
                                  '--work-dir', tmp_path / 'pth')
    assert status == 2 and stderr.startswith('error: ') and 'specimen_backbones_x' in stderr
    assert 'Traceback' not in stderr


def test_evaluation_with_onnx_file(exported, tmp_path):
    status, stdout, stderr = tool_main('test.py', TINY_CONFIG, exported['int8'], '--data-root',
                                       DATA, '--work-dir', tmp_path)
    assert status == 0, stderr
    assert 'top-1 accuracy' in stdout and exported['int8'] in stdout
    assert osp.isfile(tmp_path / 'metrics_val.json')


def test_bio_classifier_runs_onnx_file(exported, tmp_path):
    cfg = tiny_config(tmp_path)
    from_onnx = BioClassifier(cfg, exported['fp32']).predict(osp.join(DATA, 'test'), topk=2)
    from_checkpoint = BioClassifier(cfg, CHECKPOINT, precision='fp32').predict(
        osp.join(DATA, 'test'), topk=2)
    assert list(from_onnx.pred_label) == list(from_checkpoint.pred_label)
    np.testing.assert_allclose(from_onnx.score, from_checkpoint.score, atol=1e-4)
    classifier = BioClassifier(cfg, exported['fp32'], tta=True)
    assert classifier.classes == ('0', '1', '2')
    assert len(classifier.predict(test_images()[:2])) == 2


def test_int8_agrees_with_fp32_on_val_images(exported):
    model = onnx.load(exported['int8'])
    assert sum(node.op_type == 'QuantizeLinear' for node in model.graph.node) > 10
    metadata = read_metadata(exported['int8'])
    assert metadata['precision'] == 'int8'
    # the default variant met the target: no convolution kept in float, no other one tried
    quantization = metadata['quantization']
    assert quantization['float_leading_convs'] == 0 and len(quantization['tried']) == 1
    assert quantization['top1_agreement'] >= 0.95 and quantization['check_images'] == 9
    batch = pipeline_batch(val_images())
    agreement = (onnx_logits(exported['int8'], batch).argmax(1)
                 == onnx_logits(exported['fp32'], batch).argmax(1)).mean()
    assert agreement >= 0.95
    assert osp.getsize(exported['int8']) < osp.getsize(exported['fp32']) / 2


# a fresh interpreter in which torch, bioplugin, MMEngine, OpenCV and Pillow cannot be imported
STANDALONE = '''
import sys
class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'bioplugin', 'mmengine', 'mmpretrain', 'mmcv', 'cv2',
                                  'PIL', 'torchvision'):
            raise ImportError('not on this machine: ' + name)
sys.meta_path.insert(0, Refuse())
sys.argv = ['predict_onnx.py'] + sys.argv[1:]
import runpy
try:
    runpy.run_path(%r, run_name='__main__')
except SystemExit as exit_:
    assert not exit_.code, exit_.code
assert 'torch' not in sys.modules and 'numpy' in sys.modules and 'onnxruntime' in sys.modules
''' % osp.join(REPO, 'tools', 'deploy', 'predict_onnx.py')


def test_standalone_predictor_needs_only_numpy_and_onnxruntime(exported, tmp_path):
    arrays = tmp_path / 'arrays'
    arrays.mkdir()
    for path in test_images():  # decoded here; the fresh process reads the arrays with numpy
        rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        np.save(arrays / (osp.splitext(osp.basename(path))[0] + '.npy'), rgb)
    out = tmp_path / 'standalone.csv'
    result = subprocess.run([sys.executable, '-c', STANDALONE, exported['fp32'], str(arrays),
                             '--csv', str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    standalone = read_csv(out)
    status, _, stderr = tool_main('test.py', TINY_CONFIG, CHECKPOINT, '--csv',
                                  tmp_path / 'checkpoint.csv', '--data-root', DATA, '--fp32')
    assert status == 0, stderr
    reference = read_csv(tmp_path / 'checkpoint.csv')
    assert list(standalone.image_name) == list(reference.image_name)
    assert list(standalone.pred_label) == list(reference.pred_label)
    np.testing.assert_allclose(standalone.score.astype(float), reference.score.astype(float),
                               atol=0.02)


# ---------------------------------------------------------------- bad input

def test_truncated_empty_and_foreign_onnx_files_are_one_sentence(exported, tmp_path):
    truncated = tmp_path / 'truncated.onnx'
    with open(exported['fp32'], 'rb') as file:
        truncated.write_bytes(file.read()[:50000])
    empty = tmp_path / 'empty.onnx'
    empty.write_bytes(b'')
    foreign = tmp_path / 'foreign.onnx'
    model = onnx.load(exported['fp32'])
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    expected = {truncated: 'is not a readable ONNX model', empty: 'is empty',
                foreign: 'has no bioplugin metadata', tmp_path / 'missing.onnx': 'does not exist'}
    for path, sentence in expected.items():
        status, _, stderr = tool_main('test.py', TINY_CONFIG, path, '--data-root', DATA,
                                      '--work-dir', tmp_path)
        assert status == 2 and sentence in stderr and str(path) in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
        with pytest.raises(CheckpointError, match=sentence):
            BioClassifier(tiny_config(tmp_path), str(path))


def test_checkpoint_that_does_not_fit_the_config(tmp_path):
    status, _, stderr = tool_main(
        'deploy/export_onnx.py', TINY_CONFIG, CHECKPOINT, '--out', tmp_path / 'x.onnx',
        '--data-root', DATA, '--cfg-options', 'model.head.num_classes=4')
    assert status == 2 and 'does not fit the model of this config' in stderr, stderr
    assert not osp.exists(tmp_path / 'x.onnx')


def test_int8_without_training_images(tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(osp.join(DATA, 'val'), data / 'val')
    status, _, stderr = tool_main(
        'deploy/export_onnx.py', TINY_CONFIG, CHECKPOINT, '--out', tmp_path / 'x.onnx',
        '--int8', '--data-root', data, '--work-dir', tmp_path)
    assert status == 2 and '--int8 calibrates on training images' in stderr, stderr
    assert str(data) in stderr


def test_failed_check_exits_non_zero_and_keeps_the_files(tmp_path):
    status, stdout, stderr = tool_main(
        'deploy/export_onnx.py', TINY_CONFIG, CHECKPOINT, '--out', tmp_path / 'x.onnx',
        '--int8', '--min-int8-agreement', '1.01', '--calibration-images', '8',
        '--data-root', DATA, '--work-dir', tmp_path)
    assert status == 1 and 'FAIL' in stdout and 'does not match the checkpoint' in stderr
    assert 'none meets it' in stdout
    assert osp.isfile(tmp_path / 'x.onnx') and osp.isfile(tmp_path / 'x_int8.onnx')
    tried = read_metadata(str(tmp_path / 'x_int8.onnx'))['quantization']['tried']
    assert [count for count, _ in tried] == [0, 8, 16]


def test_onnx_model_refuses_a_launcher_and_wrong_input_size(exported, tmp_path):
    status, _, stderr = tool_main('test.py', TINY_CONFIG, exported['fp32'], '--data-root', DATA,
                                  '--launcher', 'pytorch')
    assert status == 2 and 'runs in one process' in stderr
    cfg = tiny_config(tmp_path)
    cfg.test_dataloader.dataset.pipeline[-2] = dict(type='CenterCrop', crop_size=200)
    classifier = BioClassifier(cfg, exported['fp32'])
    with pytest.raises(ConfigError, match='takes 224x224 images but the test pipeline gives'):
        classifier.predict(test_images()[:1])


def test_openvino_backend(exported, tmp_path):
    """OpenVINO is optional: where installed it runs the same file; elsewhere one sentence."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match='pip install openvino'):
            BioClassifier(tiny_config(tmp_path), exported['fp32'], backend='openvino')
        return
    cfg = tiny_config(tmp_path)
    by_openvino = BioClassifier(cfg, exported['fp32'], backend='openvino').predict(
        osp.join(DATA, 'test'))
    by_onnxruntime = BioClassifier(cfg, exported['fp32']).predict(osp.join(DATA, 'test'))
    assert list(by_openvino.pred_label) == list(by_onnxruntime.pred_label)


def test_unknown_backend(exported, tmp_path):
    with pytest.raises(ConfigError, match='Unknown ONNX backend'):
        BioClassifier(tiny_config(tmp_path), exported['fp32'], backend='tensorrt')


def test_int8_weights_are_7_bit_where_the_cpu_lacks_vnni():
    from bioplugin.deploy.quantization import lacks_vnni
    assert lacks_vnni({'sse2', 'avx2', 'fma'})
    assert not lacks_vnni({'sse2', 'avx2', 'avx512f', 'avx512_vnni'})
    assert not lacks_vnni({'sse2', 'avx2', 'avx_vnni'})
    assert not lacks_vnni({'fp', 'asimd', 'asimddp'})  # Arm: no such saturation


def test_int8_keeps_what_follows_the_features_in_float(exported):
    from bioplugin.deploy.quantization import downstream_nodes
    graph = onnx.load(exported['fp32']).graph
    kept = downstream_nodes(graph, ['features'])
    kinds = {node.op_type for node in graph.node if node.name in kept}
    assert {'Gemm', 'Softmax'} <= kinds or {'MatMul', 'Softmax'} <= kinds, kinds
    quantized = {node.name for node in onnx.load(exported['int8']).graph.node
                 if node.op_type == 'DequantizeLinear'}
    assert quantized  # the backbone is int8
    int8_graph = onnx.load(exported['int8']).graph
    fed_by_dequantize = {name for node in int8_graph.node if node.name in kept
                         for name in node.input if name.endswith('_DequantizeLinear_Output')}
    assert not fed_by_dequantize  # the last Linear layer reads float tensors


def test_large_file_runs_from_its_optimised_copy_in_the_cache(exported, tmp_path, monkeypatch):
    """A file above MIN_BYTES is optimised once (in a child process, checked) and loaded with
    optimisation off: the same logits; a file written again gets a new entry, the old one
    goes; a broken entry falls back to the file itself."""
    from bioplugin.deploy import ort_cache
    from bioplugin.deploy.runtimes import OnnxRuntimeSession
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.setattr(ort_cache, 'MIN_BYTES', 0)
    source = tmp_path / 'model.onnx'
    shutil.copy(exported['fp32'], source)
    images = np.ascontiguousarray(pipeline_batch(test_images()[:3])['inputs'].flip(1).numpy())
    expected = onnx_logits(str(source), dict(inputs=pipeline_batch(test_images()[:3])['inputs']))

    session = OnnxRuntimeSession(str(source))
    first = session.optimized_file
    assert first and first.startswith(ort_cache.cache_dir())
    assert (session.session.get_session_options().graph_optimization_level
            == onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL)
    np.testing.assert_allclose(session.run(images), expected, atol=1e-5, rtol=0)
    assert session.metadata['classes'] == ['0', '1', '2']

    def no_child(*args, **kwargs):
        raise AssertionError('the cached copy should have been used')
    with monkeypatch.context() as patch:  # the second session reuses the entry
        patch.setattr(ort_cache.subprocess, 'run', no_child)
        assert OnnxRuntimeSession(str(source)).optimized_file == first

    shutil.copy(exported['fp32'], tmp_path / 'new.onnx')
    (tmp_path / 'new.onnx').replace(source)  # exported again: another inode and times
    second = OnnxRuntimeSession(str(source)).optimized_file
    assert second != first and not osp.exists(osp.dirname(first))

    with open(second + '.data', 'r+b') as file:  # a damaged entry
        file.truncate(100)
    with pytest.warns(UserWarning, match='no optimised copy in the cache'):
        fallback = OnnxRuntimeSession(str(source))
    assert fallback.optimized_file is None and not osp.exists(osp.dirname(second))
    np.testing.assert_allclose(fallback.run(images), expected, atol=1e-5, rtol=0)

    monkeypatch.setattr(ort_cache, 'CACHE_ENTRIES', 1)
    shutil.copy(exported['fp32'], tmp_path / 'other.onnx')
    OnnxRuntimeSession(str(tmp_path / 'other.onnx'))
    OnnxRuntimeSession(str(source))
    assert len(glob.glob(osp.join(ort_cache.cache_dir(), '*'))) == 1


def test_small_files_and_a_disabled_cache_load_the_file_itself(exported, monkeypatch):
    from bioplugin.deploy import ort_cache
    from bioplugin.deploy.runtimes import OnnxRuntimeSession
    assert OnnxRuntimeSession(exported['fp32']).optimized_file is None  # under MIN_BYTES
    monkeypatch.setattr(ort_cache, 'MIN_BYTES', 0)
    monkeypatch.setenv('BIOPLUGIN_ONNX_CACHE', '0')
    assert OnnxRuntimeSession(exported['fp32']).optimized_file is None
