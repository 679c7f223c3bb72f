"""One post-processing path from logits: the command line, the Python API and an exported
ONNX file give the same table, and calibrated scores are exactly ``softmax(logits / T)``.

Every comparison names its precision: bfloat16 autocast runs on every CPU (emulated where the
hardware has none), so these tests mean the same on AVX2-only, AVX512-BF16 and AMX machines.
"""
import os.path as osp

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp, softmax

from bioplugin.apis import BioClassifier, evaluate, load_config
from bioplugin.datasets.folder_layout import scan_images
from bioplugin.engine.checkpoint_io import read_checkpoint
from bioplugin.evaluation.model_facts import read_calibration
from bioplugin.models import load_trained_model
from helpers import TINY_CONFIG, make_image_folder, run_tool, tool_main, write_image
from test_open_set import checkerboards

# The two paths batch alike (the config's test batch size) and run the same kernels, so on
# one machine they agree to the CSV's six decimals in either precision. Between machines
# (or batchings) bfloat16 moves logits by a few of its 8-bit-mantissa steps; the bound below
# is what that allows for a score, and it is what this test holds the paths to.
SCORE_BOUND = {'fp32': 1e-6, 'bf16': 1e-6}
PRECISION_FLAG = {'fp32': '--fp32', 'bf16': '--amp'}  # --amp is bfloat16 on a CPU
LAST_LAYER = 'head.layers.5'  # BioClsHead's logit layer


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """A tiny model on three one-colour classes (24 val images, 3 of them looking like
    another class), calibrated when training ended (temperature, review thresholds, unknown
    threshold); a test folder of 30 images of the classes and 6 checkerboards (not one of
    them); a taxonomy above the classes."""
    tmp = tmp_path_factory.mktemp('one_path')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=8,
                             test_images=0)
    for label in range(3):  # one val image per class looks like the next class: val has
        # mistakes, so the calibration temperature has a finite optimum
        write_image(osp.join(data, 'val', str(label), 'img_7.jpg'), (label + 1) % 3,
                    seed=(5, label))
    for i in range(30):
        write_image(osp.join(data, 'test', f'known_{i:02d}.jpg'), i % 3, seed=(11, i))
    checkerboards(osp.join(data, 'test'), count=6, seed=3)
    work_dir = tmp / 'work'
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
                      str(work_dir), '--cfg-options', 'train_cfg.max_epochs=4')
    assert result.returncode == 0, result.stderr[-2000:]
    best = str(sorted(work_dir.glob('best_*.pth'))[-1])
    taxonomy = tmp / 'taxonomy.csv'
    taxonomy.write_text('species,genus\n0,Alpha\n1,Alpha\n2,Beta\n')
    return dict(data=data, work_dir=work_dir, best=best, taxonomy=str(taxonomy),
                cfg=load_config(TINY_CONFIG, data_root=data, work_dir=str(tmp / 'api')),
                tmp=tmp)


def read_table(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={'pred_label': str, 'top2_label': str},
                       keep_default_na=False)


def assert_same_table(csv: pd.DataFrame, table: pd.DataFrame, bound: float) -> None:
    """Same columns in the same order, same text, numbers within ``bound``."""
    assert list(csv.columns) == list(table.columns)
    assert len(csv) == len(table)
    for column in csv.columns:
        expected = table[column]
        if pd.api.types.is_float_dtype(expected):
            np.testing.assert_allclose(csv[column].to_numpy(float), expected.to_numpy(float),
                                       atol=bound, err_msg=column)
        else:
            assert list(csv[column].astype(str)) == list(expected.astype(str)), column


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['fp32', 'bf16'])
def test_csv_and_python_api_give_the_same_table(run, precision, tmp_path):
    """tools/test.py --csv and BioClassifier.predict: taxonomy, unknown and review columns,
    every value, in float32 and in bfloat16."""
    assert read_calibration(run['best'])['open_set']['threshold'] is not None
    csv = tmp_path / 'prediction.csv'
    status, _, stderr = tool_main('test.py', TINY_CONFIG, run['best'], '--csv', csv,
                                  '--data-root', run['data'], '--work-dir', tmp_path,
                                  '--topk', '2', '--taxonomy', run['taxonomy'],
                                  PRECISION_FLAG[precision])
    assert status == 0, stderr
    from_csv = read_table(csv)
    classifier = BioClassifier(run['cfg'], run['best'], precision=precision)
    assert classifier.precision == precision
    table = classifier.predict(osp.join(run['data'], 'test'), topk=2, taxonomy=run['taxonomy'])
    assert {'decision', 'unknown', 'unknown_score', 'genus_label', 'confident_rank'} <= set(
        table.columns)
    assert table.unknown.any() and not table.unknown.all()  # the checkerboards
    assert_same_table(from_csv, table, SCORE_BOUND[precision])


@pytest.fixture(scope='module')
def wide_gaps(run):
    """The trained model with its logit layer scaled so that val logits lie more than 40
    nats apart (a float32 softmax rounds the runner-up to 0), calibrated again."""
    checkpoint = read_checkpoint(run['best'])
    model, _ = load_trained_model(run['cfg'], run['best'])
    val_logits = plain_logits(model, osp.join(run['data'], 'val'))
    spread = np.median(val_logits.max(1) - val_logits.min(1))
    factor = float(max(1.0, 80.0 / spread))
    for name in ('weight', 'bias'):
        checkpoint['state_dict'][f'{LAST_LAYER}.{name}'] *= factor
    scaled = str(run['work_dir'] / 'wide_gaps.pth')
    torch.save(checkpoint, scaled)
    status, _, stderr = tool_main('analysis/calibrate.py', str(run['work_dir']), '--checkpoint',
                                  scaled, '--out-dir', str(run['tmp'] / 'wide_calibration'),
                                  '--fp32')
    assert status == 0, stderr
    model, _ = load_trained_model(run['cfg'], scaled)
    return dict(checkpoint=scaled, model=model,
                val=plain_logits(model, osp.join(run['data'], 'val')),
                test=plain_logits(model, osp.join(run['data'], 'test')))


@torch.no_grad()
def plain_logits(model, folder: str) -> np.ndarray:
    """Float32 logits of every image under ``folder`` (natural file order, class folders in
    order), through the config's test pipeline, one image at a time: a path that shares no
    batching, autocast or post-processing with the tools."""
    from bioplugin.apis.image_inputs import ImageListDataset
    cfg = load_config(TINY_CONFIG)
    dataset = ImageListDataset(scan_images(folder, recursive=True),
                               cfg.test_dataloader.dataset.pipeline)
    model.eval()
    rows = []
    for index in range(len(dataset)):
        sample = dataset[index]
        inputs = model.data_preprocessor(dict(inputs=[sample['inputs']],
                                              data_samples=[sample['data_samples']]))['inputs']
        rows.append(model(inputs, mode='tensor').double().numpy()[0])
    return np.stack(rows)


def val_labels(data: str) -> np.ndarray:
    return np.array([int(osp.basename(osp.dirname(path)))
                     for path in scan_images(osp.join(data, 'val'), recursive=True)])


def temperature_by_scipy(logits: np.ndarray, labels: np.ndarray) -> float:
    """The NLL-minimising temperature, by a method of its own (bounded scalar search on
    log T with SciPy's logsumexp)."""
    def nll(log_t):
        scaled = logits / np.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(labels)), labels]))
    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(100)),
                                        method='bounded', options=dict(xatol=1e-9)).x))


@pytest.mark.slow
def test_calibration_is_exact_on_logits_far_apart(run, wide_gaps, tmp_path):
    labels = val_labels(run['data'])
    # the val logits the calibration saw (the tools' path, float32) are the model's
    val = evaluate(run['cfg'], wide_gaps['checkpoint'], 'val', raw_scores=True, unknown=False,
                   precision='fp32', out_dir=str(tmp_path))['logits']
    np.testing.assert_allclose(val, wide_gaps['val'], atol=1e-3)
    gaps = np.sort(val, axis=1)
    assert np.median(gaps[:, -1] - gaps[:, 0]) > 40  # the case clipped probabilities break
    temperature = read_calibration(wide_gaps['checkpoint'])['temperature']
    assert temperature == pytest.approx(temperature_by_scipy(val, labels), rel=1e-3)
    # the old fit on log(clip(softmax, 1e-12)) lands elsewhere: this case tells them apart
    clipped = np.log(np.clip(softmax(val.astype(np.float32), axis=1), 1e-12, 1))
    assert abs(temperature_by_scipy(clipped, labels) / temperature - 1) > 0.01

    expected = softmax(wide_gaps['test'] / temperature, axis=1)
    columns = {}
    for name, model_file in (('pth', wide_gaps['checkpoint']), ('onnx', None)):
        if name == 'onnx':
            model_file = str(tmp_path / 'wide_gaps.onnx')
            status, _, stderr = tool_main('deploy/export_onnx.py', TINY_CONFIG,
                                          wide_gaps['checkpoint'], '--out', model_file,
                                          '--data-root', run['data'], '--work-dir', tmp_path)
            assert status == 0, stderr
        csv = tmp_path / f'{name}.csv'
        status, _, stderr = tool_main('test.py', TINY_CONFIG, model_file, '--csv', csv,
                                      '--topk', '3', '--data-root', run['data'], '--work-dir',
                                      tmp_path, '--fp32')
        assert status == 0, stderr
        columns[name] = read_table(csv)
    pth, onnx = columns['pth'], columns['onnx']
    scores = ['score', 'top2_score', 'top3_score']
    # softmax(logits / T) of the independent logits, best first, equals the .pth CSV
    np.testing.assert_allclose(pth[scores], np.sort(expected, axis=1)[:, ::-1], atol=1e-6)
    assert list(pth.pred_label) == [str(i) for i in expected.argmax(1)]
    # and the ONNX CSV: the same labels, scores within float32 graph arithmetic
    assert list(onnx.pred_label) == list(pth.pred_label)
    np.testing.assert_allclose(onnx[scores], pth[scores], atol=1e-4)
    np.testing.assert_allclose(onnx.unknown_score, pth.unknown_score, rtol=1e-4, atol=1e-3)


def test_log_softmax_of_far_apart_logits_keeps_their_order():
    """The post-processor's arithmetic: float64 log-softmax, never log(clip(p))."""
    from bioplugin.evaluation.temperature_scaling import (calibrated_log_scores,
                                                          calibrated_scores)
    logits = np.array([[100.0, 40.0, 0.0], [0.0, -60.0, -90.0], [np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(calibrated_log_scores(logits[:2], 2.0),
                               log_softmax(logits[:2] / 2.0, axis=1), rtol=1e-12)
    scores = calibrated_scores(logits, 2.0)
    assert np.isnan(scores[2]).all()
    assert (np.argsort(-scores[:2], axis=1) == [[0, 1, 2], [0, 1, 2]]).all()


@pytest.mark.slow
def test_a_test_run_reads_the_checkpoint_once(run, tmp_path, monkeypatch):
    """Classes, calibration and weights of one tools/test.py run come from one read."""
    loads, load = [], torch.load
    monkeypatch.setattr(torch, 'load', lambda path, *args, **kwargs: loads.append(str(path))
                        or load(path, *args, **kwargs))
    status, _, stderr = tool_main('test.py', TINY_CONFIG, run['best'], '--csv',
                                  tmp_path / 'p.csv', '--data-root', run['data'],
                                  '--work-dir', tmp_path, '--taxonomy', run['taxonomy'])
    assert status == 0, stderr
    assert loads == [run['best']]
