"""Class and file names are data: names that read as math (``$\\bad$``), as missing values
(``NA``, ``None``) or as spreadsheet formulas (``=1+1``) go through training, prediction,
evaluation, the report and the confusion matrix as they are. CSVs for people carry the
formula guard (unless ``--raw-names``) and bioplugin reads them back losslessly."""
import html
import io
import json
import os.path as osp

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from bioplugin.analysis import report as report_module
from bioplugin.analysis.confusion import confused_pairs, per_class_table
from bioplugin.analysis.plots import (plot_confused_pairs, plot_confusion_matrix,
                                      plot_image_grid, plot_per_class)
from bioplugin.analysis.predictions import read_predictions
from bioplugin.apis import BioClassifier, work_dir_config
from bioplugin.datasets import sort_class_names
from bioplugin.engine.checkpoint_io import checkpoint_classes, read_checkpoint, resolve_checkpoint
from bioplugin.evaluation.prediction_table import (guard_formula, read_prediction_csv,
                                                   unguard_formula, write_csv_atomic)
from bioplugin.evaluation.taxonomy import read_taxonomy

from helpers import TINY_CONFIG, make_image_folder, run_tool, tool_main, write_image

NAMES = ['$\\bad$', 'NA', 'None', '=1+1']
CLASSES = sort_class_names(NAMES)  # the order of the class folders
GUARDED = {'$\\bad$', 'NA', 'None', "'=1+1"}
TEST_STEMS = ['=2+3', 'NA', 'test_0']


def read_cells(path) -> pd.DataFrame:
    """A CSV as the text a spreadsheet (or a person) sees in it."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def label_sets(frame: pd.DataFrame) -> set:
    """The set of class labels of each row of a top-4 table (every class once)."""
    columns = ['pred_label'] + [f'top{i}_label' for i in (2, 3, 4)]
    return {frozenset(row) for row in frame[columns].itertuples(index=False)}


# ---------------------------------------------------------------- the guard, by hand

def test_formula_guard_by_hand_and_lossless_round_trip(tmp_path):
    cases = {'=1+1': "'=1+1", '+1': "'+1", '-1': "'-1", '@SUM(A1)': "'@SUM(A1)",
             '\tx': "'\tx", '\rx': "'\rx", "'quoted": "''quoted", 'NA': 'NA',
             '$\\bad$': '$\\bad$', 'a=b': 'a=b', '': ''}
    for name, guarded in cases.items():
        assert guard_formula(name) == guarded and unguard_formula(guarded) == name
    assert guard_formula(-0.5) == -0.5 and guard_formula(None) is None

    frame = pd.DataFrame({'image_name': ['=cmd', 'NA', "'q", 'ok'],
                          'pred_label': ['-1', 'None', '@x', 'null'],
                          'score': [-0.5, np.nan, 0.25, 1.0],
                          'unknown': [True, False, False, True],
                          '=rank_label': ['+G', 'nan', 'G', 'G']})
    write_csv_atomic(frame, str(tmp_path / 'guarded.csv'))
    cells = read_cells(tmp_path / 'guarded.csv')
    assert list(cells.columns) == ['image_name', 'pred_label', 'score', 'unknown',
                                   "'=rank_label"]
    assert list(cells.image_name) == ["'=cmd", 'NA', "''q", 'ok']
    assert list(cells.pred_label) == ["'-1", 'None', "'@x", 'null']
    assert list(cells.score) == ['-0.500000', '', '0.250000', '1.000000']  # numbers as numbers
    pd.testing.assert_frame_equal(read_prediction_csv(str(tmp_path / 'guarded.csv')), frame,
                                  check_dtype=False)

    write_csv_atomic(frame, str(tmp_path / 'raw.csv'), raw_names=True)
    assert list(read_cells(tmp_path / 'raw.csv').image_name) == list(frame.image_name)
    pd.testing.assert_frame_equal(read_prediction_csv(str(tmp_path / 'raw.csv'), raw_names=True),
                                  frame, check_dtype=False)


# ---------------------------------------------------------------- figures, without a model

def texts_with_names(figure) -> list:
    """Every text of a drawn figure that shows one of the names."""
    figure.savefig(io.BytesIO(), format='png')  # draws every text: math would raise here
    return [text for text in figure.findobj(Text)
            if any(name in text.get_text() for name in NAMES)]


def assert_verbatim(figure) -> None:
    texts = texts_with_names(figure)
    assert texts
    for text in texts:
        assert not text.get_parse_math() and not text.get_usetex(), text.get_text()


def test_figures_draw_names_verbatim():
    matrix = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 1]])
    confusion = plot_confusion_matrix(matrix, NAMES)
    assert_verbatim(confusion)
    axis = confusion.axes[0]
    assert [label.get_text() for label in axis.get_xticklabels()] == NAMES
    assert [label.get_text() for label in axis.get_yticklabels()] == NAMES

    per_class = plot_per_class(per_class_table(matrix, NAMES))
    assert_verbatim(per_class)
    assert {label.get_text() for label in per_class.axes[0].get_yticklabels()} == {
        f'{name} (n={n})' for name, n in zip(NAMES, matrix.sum(1))}

    pairs = plot_confused_pairs(confused_pairs(matrix, NAMES))
    assert_verbatim(pairs)
    assert {label.get_text() for label in pairs.axes[0].get_yticklabels()} == {
        '$\\bad$ → NA', 'None → $\\bad$', '=1+1 → None'}

    grid = plot_image_grid([np.zeros((4, 4, 3), np.uint8)] * 2,
                           ['$\\bad$ → NA', '=1+1 → None'], 'None of $\\bad$')
    assert_verbatim(grid)
    assert [axis.get_title() for axis in grid.axes[:2]] == ['$\\bad$ → NA', '=1+1 → None']
    assert grid.get_suptitle() == 'None of $\\bad$'


# ---------------------------------------------------------------- a trained model

@pytest.fixture(scope='module')
def names_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('names')
    data = make_image_folder(str(tmp / 'data'), NAMES, per_class=4, val_per_class=2,
                             test_images=1)
    for label, stem in enumerate(TEST_STEMS[:2]):
        write_image(osp.join(data, 'test', f'{stem}.jpg'), label, seed=label)
    work_dir = str(tmp / 'work')
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
                      work_dir, '--cfg-options', f'model.head.num_classes={len(NAMES)}')
    assert result.returncode == 0, result.stderr[-2000:]
    return dict(data=data, work_dir=work_dir, checkpoint=resolve_checkpoint(work_dir),
                options=('--data-root', data, '--cfg-options',
                         f'model.head.num_classes={len(NAMES)}'))


@pytest.mark.slow
def test_class_folders_keep_their_names_in_the_checkpoint_and_taxonomy(names_run, tmp_path):
    assert CLASSES == ['$\\bad$', '=1+1', 'NA', 'None']
    assert checkpoint_classes(read_checkpoint(names_run['checkpoint'])) == tuple(CLASSES)
    taxonomy = tmp_path / 'taxonomy.csv'
    taxonomy.write_text('species,genus\n$\\bad$,null\nNA,null\nNone,nan\n=1+1,nan\n')
    tree = read_taxonomy(str(taxonomy), CLASSES)
    assert tree.labels(range(4), 'genus') == ['null', 'nan', 'null', 'nan']


@pytest.mark.slow
def test_prediction_csv_guards_formulas_unless_raw_names(names_run, tmp_path):
    for name, extra in (('guarded.csv', ()), ('raw.csv', ('--raw-names', ))):
        status, _, stderr = tool_main('test.py', TINY_CONFIG, names_run['work_dir'], '--csv',
                                      tmp_path / name, '--topk', '4', '--work-dir', tmp_path,
                                      *names_run['options'], *extra)
        assert status == 0, stderr
    guarded, raw = read_cells(tmp_path / 'guarded.csv'), read_cells(tmp_path / 'raw.csv')
    assert label_sets(guarded) == {frozenset(GUARDED)}
    assert label_sets(raw) == {frozenset(NAMES)}
    assert sorted(guarded.image_name) == sorted(["'=2+3", 'NA', 'test_0'])
    assert sorted(raw.image_name) == sorted(TEST_STEMS)
    assert list(guarded.score) == list(raw.score)  # numbers never guarded
    assert (guarded.score.astype(float) > 0).all()

    back = read_prediction_csv(str(tmp_path / 'guarded.csv'))
    pd.testing.assert_frame_equal(back, read_prediction_csv(str(tmp_path / 'raw.csv'),
                                                            raw_names=True))
    classifier = BioClassifier(work_dir_config(names_run['work_dir']), names_run['checkpoint'],
                               device='cpu')
    assert classifier.classes == tuple(CLASSES)
    api = classifier.predict(osp.join(names_run['data'], 'test'), topk=4)
    assert label_sets(api) == {frozenset(NAMES)}  # the Python API: names as they are
    assert sorted(api.image_name) == sorted(back.image_name) == sorted(TEST_STEMS)


@pytest.mark.slow
def test_evaluation_report_and_confusion_matrix_show_names_verbatim(names_run, tmp_path,
                                                                    monkeypatch):
    status, _, stderr = tool_main('test.py', TINY_CONFIG, names_run['work_dir'], '--work-dir',
                                  tmp_path, *names_run['options'])
    assert status == 0, stderr
    predictions = tmp_path / 'predictions_val.csv'
    assert set(read_cells(predictions).gt_label) == GUARDED
    assert json.loads((tmp_path / 'metrics_val.json').read_text())['formula_guard'] is True
    frame, classes = read_predictions(str(predictions))
    assert classes == CLASSES and sorted(frame.gt_label) == sorted(NAMES * 2)

    # the round trip: the matrix from the guarded file counts the images of the true names
    status, stdout, stderr = tool_main('analysis/confusion_matrix.py', '--predictions',
                                       predictions, '--counts')
    assert status == 0, stderr
    matrix = read_cells(tmp_path / 'analysis' / 'confusion_matrix.csv').set_index(
        'true \\ predicted')
    assert list(matrix.index) == list(matrix.columns) == [guard_formula(c) for c in CLASSES]
    expected = pd.crosstab(frame.gt_label, frame.pred_label).reindex(
        index=CLASSES, columns=CLASSES, fill_value=0)
    np.testing.assert_array_equal(matrix.to_numpy().astype(int), expected.to_numpy())
    assert set(read_cells(tmp_path / 'analysis' / 'per_class.csv')['class']) == GUARDED
    status, _, stderr = tool_main('analysis/confusion_matrix.py', '--predictions', predictions,
                                  '--out-dir', tmp_path / 'raw', '--raw-names')
    assert status == 0, stderr
    assert set(read_cells(tmp_path / 'raw' / 'per_class.csv')['class']) == set(NAMES)

    figures = {}
    save_figure = report_module.save_figure

    def keep(figure, path, *args, **kwargs):
        figures[osp.basename(path)] = figure
        return save_figure(figure, path, *args, **kwargs)

    monkeypatch.setattr(report_module, 'save_figure', keep)
    page = open(report_module.write_report(names_run['work_dir'], out_dir=str(tmp_path / 'r'),
                                           gradcam_images=2, gallery_images=2)).read()
    for name in NAMES:
        assert f'<td>{html.escape(name)}</td>' in page, name
    axis = figures['confusion_matrix.png'].axes[0]
    assert [label.get_text() for label in axis.get_yticklabels()] == CLASSES
    assert [label.get_text() for label in axis.get_xticklabels()] == CLASSES
    assert {label.get_text().split(' (n=')[0] for label in
            figures['per_class.png'].axes[0].get_yticklabels()} == set(NAMES)
    for name in ('confusion_matrix.png', 'per_class.png', 'gradcam.png'):
        assert_verbatim(figures[name])
    for figure in figures.values():
        for text in texts_with_names(figure):
            assert not text.get_parse_math(), text.get_text()
    assert set(read_cells(tmp_path / 'r' / 'per_class.csv')['class']) == GUARDED
