"""Analysis: confusion tables and plots, stitched curves, model stats, Grad-CAM, the report."""
import io
import json
import os
import os.path as osp
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from bioplugin.analysis import (confused_pairs, confusion_matrix, confusion_outputs,
                                load_training_curves, model_stats, normalize_rows,
                                per_class_table, plot_confusion_matrix, plot_per_class)
from bioplugin.analysis.plots import MAX_NAMED_CLASSES
from bioplugin.analysis.report import write_report
from bioplugin.apis import load_config
from bioplugin.apis.options import enable_tensorboard
from bioplugin.errors import ConfigError

from helpers import RECIPE_CONFIG, TINY_CONFIG, make_image_folder, run_logs, run_tool


def synthetic_predictions(num_classes: int, per_class: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    classes = [str(i) for i in range(num_classes)]
    truth = np.repeat(np.arange(num_classes), per_class)
    wrong = rng.random(len(truth)) < 0.3
    pred = np.where(wrong, rng.integers(0, num_classes, len(truth)), truth)
    frame = pd.DataFrame({'gt_label': [classes[i] for i in truth],
                          'pred_label': [classes[i] for i in pred],
                          'score': rng.random(len(truth))})
    return frame, classes, truth, pred


@pytest.mark.parametrize('num_classes', [3, 100])
def test_confusion_outputs_match_an_independent_count(num_classes, tmp_path):
    frame, classes, truth, pred = synthetic_predictions(num_classes)
    outputs = confusion_outputs(frame, classes, str(tmp_path), top_pairs=5)
    for path in outputs['files'].values():
        assert osp.getsize(path) > 0, path

    counts = pd.read_csv(tmp_path / 'confusion_matrix.csv', index_col=0)
    for i in range(num_classes):
        for j in (0, num_classes - 1, i):
            assert counts.iloc[i, j] == np.sum((truth == i) & (pred == j))

    per_class = pd.read_csv(tmp_path / 'per_class.csv', dtype={'class': str}).set_index('class')
    for i, name in enumerate(classes):
        expected = np.sum((truth == i) & (pred == i)) / np.sum(truth == i)
        assert per_class.loc[name, 'accuracy'] == pytest.approx(expected, abs=1e-6)
        assert per_class.loc[name, 'support'] == np.sum(truth == i)
    assert list(per_class['accuracy']) == sorted(per_class['accuracy'])  # worst first

    pairs = pd.read_csv(tmp_path / 'confused_pairs.csv', dtype={'true': str, 'predicted': str})
    off_diagonal = sorted(((np.sum((truth == i) & (pred == j)),
                            np.sum((truth == i) & (pred == j)) / np.sum(truth == i))
                           for i in range(num_classes) for j in range(num_classes)
                           if i != j and np.sum((truth == i) & (pred == j))), reverse=True)
    assert list(pairs['count']) == [count for count, _ in off_diagonal[:5]]
    np.testing.assert_allclose(pairs['rate'], [rate for _, rate in off_diagonal[:5]], atol=1e-6)
    first = pairs.iloc[0]
    assert first['count'] == np.sum((truth == int(first['true'])) &
                                    (pred == int(first['predicted'])))


def test_confusion_plot_grows_with_the_class_count_up_to_the_named_limit(tmp_path):
    sizes = {}
    for count in (3, MAX_NAMED_CLASSES, 2 * MAX_NAMED_CLASSES):
        frame, classes, _, _ = synthetic_predictions(count)
        confusion_outputs(frame, classes, str(tmp_path / str(count)))
        sizes[count] = cv2.imread(str(tmp_path / str(count) / 'confusion_matrix.png')).shape
    most = sizes[MAX_NAMED_CLASSES]
    assert most[0] > 1.8 * sizes[3][0] and most[1] > 1.8 * sizes[3][1]
    assert sizes[2 * MAX_NAMED_CLASSES] == most  # beyond the limit: the most confused classes


def named_ticks(labels) -> list:
    return [label.get_text() for label in labels if label.get_text()]


def test_figures_of_1000_classes_name_at_most_the_limit(tmp_path):
    frame, classes, truth, pred = synthetic_predictions(1000, per_class=3)
    matrix = confusion_matrix(frame.gt_label, frame.pred_label, classes)
    table = per_class_table(matrix, classes)
    per_class = plot_per_class(table)
    confusion = plot_confusion_matrix(matrix, classes)
    for figure in (per_class, confusion):
        figure.savefig(io.BytesIO(), format='png')  # ticks as drawn

    bars = named_ticks(per_class.axes[0].get_yticklabels())
    assert len(bars) == MAX_NAMED_CLASSES
    worst = table.sort_values('accuracy', kind='stable').head(MAX_NAMED_CLASSES)
    assert bars == [f'{name} (n={n})' for name, n in zip(worst['class'], worst['support'])]
    assert f'the {MAX_NAMED_CLASSES} worst of 1,000 classes' in per_class.axes[0].get_title()

    axis = confusion.axes[0]
    columns, rows = named_ticks(axis.get_xticklabels()), named_ticks(axis.get_yticklabels())
    assert columns == rows and len(rows) == MAX_NAMED_CLASSES
    assert rows == sorted(rows, key=int)  # in class order
    top = confused_pairs(matrix, classes, top_n=1).iloc[0]
    assert {top['true'], top['predicted']} <= set(rows)
    assert f'the {MAX_NAMED_CLASSES} most confused of 1,000 classes' in axis.get_title()
    shown = [classes.index(name) for name in rows]  # each row: shares of the whole class
    np.testing.assert_allclose(axis.images[0].get_array(),
                               normalize_rows(matrix)[np.ix_(shown, shown)])


def test_confusion_outputs_of_1000_classes_say_what_the_figures_leave_out(tmp_path):
    frame, classes, _, _ = synthetic_predictions(1000, per_class=1)
    outputs = confusion_outputs(frame, classes, str(tmp_path))
    assert outputs['notes'] == {
        'confusion_png': f'showing the {MAX_NAMED_CLASSES} most confused of 1,000 classes; '
                         'all in confusion_matrix.csv',
        'per_class_png': f'showing the {MAX_NAMED_CLASSES} worst of 1,000 classes; all in '
                         'per_class.csv'}
    assert len(pd.read_csv(tmp_path / 'per_class.csv')) == 1000
    assert pd.read_csv(tmp_path / 'confusion_matrix.csv', index_col=0).shape == (1000, 1000)
    assert confusion_outputs(*synthetic_predictions(MAX_NAMED_CLASSES)[:2],
                             str(tmp_path / 'few'))['notes'] == {}


@pytest.mark.slow
def test_report_of_many_classes_says_what_its_figures_leave_out(tmp_path):
    classes = [f'sp{i}' for i in range(MAX_NAMED_CLASSES + 10)]
    data = make_image_folder(str(tmp_path / 'data'), classes, per_class=2, val_per_class=1,
                             test_images=1)
    work_dir = str(tmp_path / 'work')
    result = run_tool(osp.join('tools', 'train.py'), TINY_CONFIG, '--data-root', data,
                      '--work-dir', work_dir, '--cfg-options',
                      f'model.head.num_classes={len(classes)}', 'train_cfg.max_epochs=1',
                      '--no-calibrate')
    assert result.returncode == 0, result.stderr[-2000:]
    page = open(write_report(work_dir, gradcam_images=1, gallery_images=1)).read()
    assert (f'(showing the {MAX_NAMED_CLASSES} worst of {len(classes)} classes; all in '
            'per_class.csv)') in page
    assert (f'(showing the {MAX_NAMED_CLASSES} most confused of {len(classes)} classes; all '
            'in confusion_matrix.csv)') in page


def test_per_class_table_handles_classes_without_predictions():
    matrix = np.array([[2, 0], [1, 0]])
    table = per_class_table(matrix, ['a', 'b']).set_index('class')
    assert table.loc['b', 'precision'] == 0 and table.loc['b', 'accuracy'] == 0
    assert table.loc['a', 'precision'] == pytest.approx(2 / 3)


def _write_run(work_dir, name, train_epochs, val_epochs, loss_of=lambda e: 10.0 - e):
    folder = osp.join(work_dir, name, 'vis_data')
    os.makedirs(folder)
    with open(osp.join(folder, 'scalars.json'), 'w') as file:
        step = 0
        for epoch, iters in train_epochs:
            for _ in range(iters):
                step += 1
                file.write(json.dumps(dict(lr=0.1 / epoch, loss=loss_of(epoch), epoch=epoch,
                                           iter=step, step=step)) + '\n')
            if epoch in val_epochs:
                file.write(json.dumps({'accuracy/top1': 10.0 * epoch, 'step': epoch}) + '\n')


def test_curves_of_a_resumed_work_dir_hold_every_epoch_once(tmp_path):
    work_dir = str(tmp_path)
    # killed during epoch 3 after its training iterations, resumed from epoch 2
    _write_run(work_dir, '20260101_100000', [(1, 3), (2, 3), (3, 1)], {1, 2})
    _write_run(work_dir, '20260101_120000', [(3, 3), (4, 3)], {3, 4},
               loss_of=lambda e: 100.0 + e)
    curves = load_training_curves(work_dir)
    assert list(curves.index) == [1, 2, 3, 4]
    assert list(curves['train_loss']) == [9.0, 8.0, 103.0, 104.0]  # epoch 3 from the resume
    assert list(curves['val_accuracy/top1']) == [10.0, 20.0, 30.0, 40.0]
    assert curves.loc[4, 'lr'] == pytest.approx(0.025)


@pytest.fixture(scope='module')
def resumed_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('analysis')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=3)
    work_dir = str(tmp / 'work')
    train = osp.join('tools', 'train.py')
    first = run_tool(train, TINY_CONFIG, '--data-root', data, '--work-dir', work_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_tool(train, TINY_CONFIG, '--data-root', data, '--work-dir', work_dir,
                      '--resume', '--cfg-options', 'train_cfg.max_epochs=3')
    assert second.returncode == 0, second.stderr[-2000:]
    return dict(data=data, work_dir=work_dir, log='\n'.join(run_logs(work_dir)))


@pytest.mark.slow
def test_curves_of_a_real_resumed_run(resumed_run):
    curves = load_training_curves(resumed_run['work_dir'])
    assert list(curves.index) == [1, 2, 3]
    logged = [float(v) for v in re.findall(
        r'Epoch\(val\) \[\d+\]\[\d+/\d+\]\s+accuracy/top1: ([\d.]+)', resumed_run['log'])]
    np.testing.assert_allclose(curves['val_accuracy/top1'], logged, atol=1e-3)
    assert curves['train_loss'].notna().all() and curves['lr'].notna().all()


def test_model_stats_of_the_recipe_use_the_real_parameter_count():
    stats = model_stats(load_config(RECIPE_CONFIG))
    head = 2048 * 512 + 512 + 2 * 512 + 512 * 100 + 100
    assert stats['params'] == 86_742_336 + head  # ResNeXt101_32x8d backbone + BioClsHead
    assert stats['within_budget'] and stats['budget'] == 100e6
    assert 16e9 < stats['flops'] < 17e9  # multiply-adds at 224 x 224


@pytest.mark.slow
def test_model_stats_tool_fails_over_budget():
    result = run_tool(osp.join('tools', 'analysis', 'model_stats.py'), TINY_CONFIG,
                      '--budget', '1000')
    assert result.returncode == 1 and 'FAIL' in result.stdout


@pytest.mark.slow
def test_report_links_every_figure_and_table(resumed_run):
    path = write_report(resumed_run['work_dir'], gradcam_images=4)
    assert path == osp.join(resumed_run['work_dir'], 'report', 'report.html')
    page = open(path).read()
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    for name in ('training_curves.png', 'confusion_matrix.png', 'per_class.png',
                 'confused_pairs.png', 'gradcam.png', 'per_class.csv', 'confused_pairs.csv',
                 'confusion_matrix.csv', 'predictions_val.csv', 'metrics_val.json'):
        assert name in linked, name
    for target in linked:
        assert osp.getsize(osp.join(osp.dirname(path), target)) > 0, target
    assert 'top-1 accuracy' in page and 'budget' in page
    assert 'risk_coverage.png' in linked and 'risk_coverage.csv' in linked
    assert ('error_gallery.png' in linked) == ('No misclassified val images' not in page)
    for section in ('Score calibration and the review queue', 'Not one of my classes',
                    'Higher ranks', 'Error gallery'):
        assert section in page, section


@pytest.mark.slow
def test_report_with_a_taxonomy_shows_every_rank(resumed_run, tmp_path):
    taxonomy = tmp_path / 'taxonomy.csv'
    taxonomy.write_text('species,genus,family\n0,G1,F1\n1,G1,F1\n2,G2,F1\n')
    path = write_report(resumed_run['work_dir'], out_dir=str(tmp_path / 'report'),
                        gradcam_images=2, taxonomy=str(taxonomy), rank='genus')
    page = open(path).read()
    assert 'confusion_matrix_genus.png' in page and 'family' in page
    matrix = pd.read_csv(tmp_path / 'report' / 'confusion_matrix_genus.csv', index_col=0)
    predictions = pd.read_csv(tmp_path / 'report' / 'predictions_val.csv', dtype=str)
    genus = {'0': 'G1', '1': 'G1', '2': 'G2'}
    for true in ('G1', 'G2'):  # the matrix counts images by true and predicted genus
        for predicted in ('G1', 'G2'):
            expected = ((predictions.gt_label.map(genus) == true)
                        & (predictions.genus_label == predicted)).sum()
            assert matrix.loc[true, predicted] == expected
    with pytest.raises(ConfigError, match="--rank 'order' is not a rank"):
        write_report(resumed_run['work_dir'], out_dir=str(tmp_path / 'bad'), gradcam_images=0,
                     taxonomy=str(taxonomy), rank='order')


def test_error_gallery_orders_mistakes_and_risk_coverage_by_hand(tmp_path):
    from bioplugin.analysis.error_gallery import error_gallery, mistakes, risk_coverage
    frame = pd.DataFrame(dict(gt_label=['a', 'a', 'b', 'b', 'b'],
                              pred_label=['a', 'b', 'a', 'b', 'a'],
                              score=[0.9, 0.6, 0.8, 0.7, np.nan],
                              image_path=[''] * 5))
    assert list(mistakes(frame).score) == [0.8, 0.6]  # unreadable rows left out
    curve = risk_coverage(np.array([0.9, 0.6, 0.8, 0.7]), np.array([1, 0, 0, 1]))
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0, 1 / 2, 1 / 3, 2 / 4])
    right = frame.assign(pred_label=frame.gt_label)
    assert error_gallery(right, []) is None


def test_gradcam_finds_its_layer_on_backbones_other_than_resnet():
    """A registered non-ResNet backbone (MobileNetV2): Grad-CAM explains its last
    convolutional stage; a backbone without convolutions is one sentence."""
    import types

    import torch
    from mmpretrain.registry import MODELS
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torch import nn

    from bioplugin.analysis.gradcam import _Logits, last_backbone_stage
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='ImageClassifier', backbone=dict(type='MobileNetV2', widen_factor=0.5),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=1280))).eval()
    layer = last_backbone_stage(model)
    assert layer is model.backbone.conv2  # the 1x1 convolution after the last stage
    with GradCAM(model=_Logits(model), target_layers=[layer]) as cam:
        maps = cam(input_tensor=torch.rand(2, 3, 64, 64),
                   targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(2)])
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all() and maps.max() > 0
    linear = types.SimpleNamespace(backbone=nn.Sequential(nn.Flatten(), nn.Linear(12, 4)))
    with pytest.raises(ConfigError, match='Grad-CAM needs a convolutional backbone'):
        last_backbone_stage(linear)


@pytest.mark.slow
def test_a_report_whose_gradcam_fails_keeps_every_other_section(resumed_run, tmp_path,
                                                                  monkeypatch):
    def cannot_explain(*args, **kwargs):
        raise ConfigError('Grad-CAM needs a convolutional backbone; Linear has no convolution '
                          'layer to explain.')

    monkeypatch.setattr('bioplugin.analysis.report.explain_predictions', cannot_explain)
    path = write_report(resumed_run['work_dir'], out_dir=str(tmp_path / 'report'),
                        gradcam_images=2)
    page = open(path).read()
    assert 'not drawn: Grad-CAM needs a convolutional backbone' in page
    linked = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert 'gradcam.png' not in linked
    for name in ('training_curves.png', 'confusion_matrix.png', 'per_class.png',
                 'risk_coverage.png'):
        assert name in linked, name


def test_gradcam_tool_explains_val_mistakes(tmp_path):
    from helpers import GOLDEN, tool_main
    status, stdout, stderr = tool_main(
        'analysis/gradcam.py', TINY_CONFIG, osp.join(GOLDEN, 'tiny_epoch_2.pth'),
        '--data-root', osp.join(GOLDEN, 'data'), '--count', '2', '--out',
        str(tmp_path / 'cam.png'), '--work-dir', str(tmp_path))
    assert status == 0, stderr
    assert osp.getsize(tmp_path / 'cam.png') > 0 and 'Grad-CAM grid' in stdout


@pytest.mark.slow
def test_analysis_tools_run_from_saved_predictions(resumed_run, tmp_path):
    evaluation = run_tool(osp.join('tools', 'test.py'), TINY_CONFIG, resumed_run['work_dir'],
                          '--data-root', resumed_run['data'], '--work-dir', str(tmp_path))
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    result = run_tool(osp.join('tools', 'analysis', 'confusion_matrix.py'),
                      '--predictions', str(tmp_path / 'predictions_val.csv'))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ('confusion_matrix.png', 'per_class.csv', 'confused_pairs.png'):
        assert osp.getsize(tmp_path / 'analysis' / name) > 0
    curves = run_tool(osp.join('tools', 'analysis', 'curves.py'), resumed_run['work_dir'],
                      '--out-dir', str(tmp_path / 'curves'))
    assert curves.returncode == 0 and '3 epochs' in curves.stdout


def test_tensorboard_switch(monkeypatch):
    cfg = load_config(TINY_CONFIG)
    monkeypatch.setattr('importlib.util.find_spec', lambda name: None)
    with pytest.raises(ConfigError, match='pip install tensorboard'):
        enable_tensorboard(cfg)
    monkeypatch.setattr('importlib.util.find_spec', lambda name: object())
    enable_tensorboard(cfg)
    enable_tensorboard(cfg)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == [
        'LocalVisBackend', 'TensorboardVisBackend']
