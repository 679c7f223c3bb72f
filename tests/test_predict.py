"""tools/test.py and the prediction API on a tiny model trained on 12 numeric class folders."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from bioplugin.apis import BioClassifier, load_config
from bioplugin.errors import BioPluginError, CheckpointError, ConfigError, DatasetError
from bioplugin.evaluation import prediction_frame, write_csv_atomic

from helpers import TINY_CONFIG, make_image_folder, run_tool, tool_main

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

TWELVE = [str(i) for i in range(12)]
TEST = osp.join('tools', 'test.py')


@pytest.fixture(scope='module')
def trained12(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('predict')
    data = make_image_folder(str(tmp / 'data'), TWELVE, per_class=4, val_per_class=2,
                             test_images=14)
    work_dir = str(tmp / 'work')
    result = run_tool(osp.join('tools', 'train.py'), TINY_CONFIG, '--data-root', data,
                      '--work-dir', work_dir, '--cfg-options', 'model.head.num_classes=12')
    assert result.returncode == 0, result.stderr[-3000:]
    best = [name for name in os.listdir(work_dir)
            if name.startswith('best_') and name.endswith('.pth')][0]
    options = ['--data-root', data, '--cfg-options', 'model.head.num_classes=12']
    return dict(data=data, work_dir=work_dir, checkpoint=osp.join(work_dir, 'epoch_2.pth'),
                best=osp.join(work_dir, best), options=options, tmp=tmp,
                train_log=result.stdout + result.stderr)


def _classifier(trained12, **kwargs):
    cfg = load_config(TINY_CONFIG, {'model.head.num_classes': 12}, data_root=trained12['data'])
    return BioClassifier(cfg, trained12['checkpoint'], device='cpu', **kwargs)


def test_prediction_frame_uses_class_folder_names_not_indices():
    scores = np.zeros((3, 12))
    scores[0, 10], scores[1, 2], scores[2, 11] = 0.9, 0.8, 0.7
    frame = prediction_frame(['a', 'b', 'c'], scores, TWELVE)
    assert list(frame.columns[:2]) == ['image_name', 'pred_label']
    assert list(frame.pred_label) == ['10', '2', '11']


def test_csv_has_one_row_per_test_image_with_folder_names(trained12, tmp_path):
    csv_path = str(tmp_path / 'prediction.csv')
    result = run_tool(TEST, TINY_CONFIG, trained12['checkpoint'], '--csv', csv_path,
                      *trained12['options'])
    assert result.returncode == 0, result.stderr[-3000:]
    with open(csv_path) as file:
        header = file.readline().strip()
    assert header == 'image_name,pred_label,score'
    frame = pd.read_csv(csv_path, dtype={'pred_label': str})
    test_files = sorted(os.listdir(osp.join(trained12['data'], 'test')))
    assert sorted(frame.image_name) == sorted(osp.splitext(name)[0] for name in test_files)
    assert len(frame) == len(test_files) == 14
    assert set(frame.pred_label) <= set(TWELVE)
    assert list(frame.image_name) == [f'test_{i}' for i in range(14)]  # natural, stable order

    # the label of each row is the folder name of the best-scoring output
    scores = _classifier(trained12).predict_scores(
        [osp.join(trained12['data'], 'test', f'test_{i}.jpg') for i in range(14)])
    assert list(frame.pred_label) == [TWELVE[i] for i in scores.argmax(1)]
    np.testing.assert_allclose(frame.score, scores.max(1), atol=1e-6)


def test_topk_class_names_and_index_columns(trained12, tmp_path):
    names = tmp_path / 'names.csv'
    names.write_text('label,name\n' + ''.join(f'{i},species {i}\n' for i in range(12)))
    csv_path = str(tmp_path / 'top3.csv')
    result = run_tool(TEST, TINY_CONFIG, trained12['checkpoint'], '--csv', csv_path,
                      '--topk', '3', '--class-names', str(names), '--include-index',
                      *trained12['options'])
    assert result.returncode == 0, result.stderr[-3000:]
    frame = pd.read_csv(csv_path, dtype=str)
    assert list(frame.columns) == [
        'image_name', 'pred_label', 'pred_index', 'pred_name', 'score', 'top2_label',
        'top2_name', 'top2_score', 'top3_label', 'top3_name', 'top3_score']
    assert all(frame.pred_name == 'species ' + frame.pred_label)
    assert all(frame.pred_index == frame.pred_label)  # numeric folders: index i is folder i
    scores = frame[['score', 'top2_score', 'top3_score']].astype(float).to_numpy()
    assert (np.diff(scores, axis=1) <= 0).all()


def test_metrics_equal_an_independent_count(trained12, tmp_path):
    # float32 on both sides: bfloat16 scores depend on the batch size, and the tiny model's
    # near-tied classes would flip between the tool's batches of 4 and the classifier's 32
    result = run_tool(TEST, TINY_CONFIG, trained12['checkpoint'], '--work-dir', str(tmp_path),
                      '--fp32', *trained12['options'])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'top-1 accuracy (%)' in result.stdout and 'images' in result.stdout
    metrics = json.load(open(tmp_path / 'metrics_val.json'))['metrics']

    classifier = _classifier(trained12, precision='fp32')
    paths, truth = [], []
    for label, name in enumerate(TWELVE):
        folder = osp.join(trained12['data'], 'val', name)
        for file in sorted(os.listdir(folder)):
            paths.append(osp.join(folder, file))
            truth.append(label)
    truth = np.array(truth)
    scores = classifier.predict_scores(paths)
    pred = scores.argmax(1)
    top5 = np.argsort(-scores, axis=1)[:, :5]
    precision, recall, f1 = [], [], []
    for c in range(12):
        tp = np.sum((pred == c) & (truth == c))
        p = tp / max(np.sum(pred == c), 1)
        r = tp / max(np.sum(truth == c), 1)
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    assert metrics['accuracy/top1'] == pytest.approx(100 * np.mean(pred == truth), abs=1e-3)
    assert metrics['accuracy/top5'] == pytest.approx(
        100 * np.mean([t in row for t, row in zip(truth, top5)]), abs=1e-3)
    assert metrics['single-label/precision'] == pytest.approx(100 * np.mean(precision), abs=1e-3)
    assert metrics['single-label/recall'] == pytest.approx(100 * np.mean(recall), abs=1e-3)
    assert metrics['single-label/f1-score'] == pytest.approx(100 * np.mean(f1), abs=1e-3)

    per_image = pd.read_csv(tmp_path / 'predictions_val.csv', dtype=str)
    assert len(per_image) == len(paths)
    assert np.mean(per_image.pred_label == per_image.gt_label) == pytest.approx(
        np.mean(pred == truth))


def test_evaluation_reproduces_the_validation_score_logged_in_training(trained12, tmp_path):
    best = torch.load(trained12['best'])
    logged = best['message_hub']['runtime_info']['best_score']
    result = run_tool(TEST, TINY_CONFIG, trained12['best'], '--work-dir', str(tmp_path),
                      *trained12['options'])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.load(open(tmp_path / 'metrics_val.json'))['metrics']
    assert metrics['accuracy/top1'] == pytest.approx(logged, abs=1e-3)


def test_tta_scores_are_flip_invariant_and_plain_scores_equal_the_forward(trained12):
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (256, 256, 3), np.uint8)  # 256 → crop 224 is centred
    mirrored = np.ascontiguousarray(image[:, ::-1])
    tta = _classifier(trained12, tta=True, precision='fp32').predict_scores([image, mirrored])
    np.testing.assert_allclose(tta[0], tta[1], atol=1e-6)

    plain = _classifier(trained12, precision='fp32')
    scores = plain.predict_scores([image, mirrored])
    assert not np.allclose(scores[0], scores[1], atol=1e-4)  # the model itself is not symmetric
    cfg = plain.cfg.data_preprocessor
    crop = image[16:240, 16:240, ::-1].astype(np.float32)  # BGR → RGB
    x = (torch.from_numpy(crop.copy()) - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    with torch.no_grad():
        logits = plain.model(x.permute(2, 0, 1)[None], mode='tensor')
    np.testing.assert_allclose(scores[0], torch.softmax(logits, 1)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tta.mean(0), (scores[0] + scores[1]) / 2, atol=1e-5)


def test_api_matches_tools_test_and_accepts_paths_folders_and_arrays(trained12, tmp_path):
    csv_path = str(tmp_path / 'prediction.csv')
    result = run_tool(TEST, TINY_CONFIG, trained12['checkpoint'], '--csv', csv_path,
                      '--topk', '2', *trained12['options'])
    assert result.returncode == 0, result.stderr[-3000:]
    from_tool = pd.read_csv(csv_path, dtype={'pred_label': str, 'top2_label': str})

    classifier = _classifier(trained12)
    folder = osp.join(trained12['data'], 'test')
    from_api = classifier.predict(folder, topk=2)
    assert list(from_api.columns) == list(from_tool.columns)
    assert list(from_api.image_name) == list(from_tool.image_name)
    assert list(from_api.pred_label) == list(from_tool.pred_label)
    np.testing.assert_allclose(from_api.score, from_tool.score, atol=1e-6)

    paths = [osp.join(folder, f'test_{i}.jpg') for i in (3, 0)]
    by_path = classifier.predict(paths)
    arrays = [cv2.imread(path) for path in paths]
    by_array = classifier.predict(arrays)
    assert list(by_path.image_name) == ['test_3', 'test_0']
    assert list(by_array.image_name) == ['array_0', 'array_1']
    np.testing.assert_allclose(by_path.score, by_array.score, atol=1e-6)
    gray = classifier.predict(cv2.cvtColor(arrays[0], cv2.COLOR_BGR2GRAY))
    bgra = classifier.predict(cv2.cvtColor(arrays[0], cv2.COLOR_BGR2BGRA))
    assert len(gray) == len(bgra) == 1


def test_two_test_files_with_one_stem_are_an_error_naming_both(trained12, tmp_path):
    data = make_image_folder(str(tmp_path / 'dup'), TWELVE, per_class=1, test_images=1)
    cv2.imwrite(osp.join(data, 'test', 'test_0.png'), np.zeros((20, 20, 3), np.uint8))
    result = run_tool(TEST, TINY_CONFIG, trained12['checkpoint'], '--csv',
                      str(tmp_path / 'p.csv'), '--data-root', data,
                      '--cfg-options', 'model.head.num_classes=12')
    assert result.returncode == 2
    assert 'test_0.jpg' in result.stderr and 'test_0.png' in result.stderr
    assert not osp.exists(tmp_path / 'p.csv')


def test_a_crash_while_writing_leaves_the_old_csv_whole(tmp_path, monkeypatch):
    path = tmp_path / 'prediction.csv'
    path.write_text('image_name,pred_label\nold,1\n')
    frame = pd.DataFrame({'image_name': ['new'], 'pred_label': ['2']})

    def crash(self, file, **kwargs):
        file.write('image_name,pred_')
        raise KeyboardInterrupt
    monkeypatch.setattr(pd.DataFrame, 'to_csv', crash)
    with pytest.raises(KeyboardInterrupt):
        write_csv_atomic(frame, str(path))
    assert path.read_text() == 'image_name,pred_label\nold,1\n'
    assert os.listdir(tmp_path) == ['prediction.csv']


def _one_line_error(result, *fragments):
    """``result`` of :func:`tool_main`: exit 2 and one ``error:`` line naming ``fragments``."""
    status, out, err = result
    assert status == 2, out[-2000:] + err[-2000:]
    message = err.strip()
    assert 'Traceback' not in message and message.startswith('error: ')
    assert len(message.splitlines()) == 1
    for fragment in fragments:
        assert fragment in message


def test_bad_inputs_stop_with_one_clear_sentence(trained12, tmp_path):
    ckpt, data = trained12['checkpoint'], trained12['data']
    work = ['--work-dir', str(tmp_path / 'work')]
    wrong_classes = tool_main('test.py', TINY_CONFIG, ckpt, '--data-root', data, *work,
                              '--cfg-options', 'model.head.num_classes=5')
    _one_line_error(wrong_classes, ckpt, 'model.head.num_classes=12')

    not_a_checkpoint = tmp_path / 'notes.pth'
    not_a_checkpoint.write_text('these are my notes, not weights')
    _one_line_error(tool_main('test.py', TINY_CONFIG, not_a_checkpoint, *work,
                              *trained12['options']),
                    str(not_a_checkpoint), 'not a readable PyTorch checkpoint')

    _one_line_error(tool_main('test.py', TINY_CONFIG, tmp_path / 'missing.pth', *work,
                              *trained12['options']), 'missing.pth', 'does not exist')

    no_test = make_image_folder(str(tmp_path / 'no_test'), TWELVE, per_class=1, test_images=0)
    os.rmdir(osp.join(no_test, 'test'))
    _one_line_error(tool_main('test.py', TINY_CONFIG, ckpt, '--csv', tmp_path / 'x.csv', *work,
                              '--data-root', no_test, '--cfg-options', 'model.head.num_classes=12'),
                    'test', 'does not exist')

    empty_test = make_image_folder(str(tmp_path / 'empty'), TWELVE, per_class=1, test_images=0)
    _one_line_error(tool_main('test.py', TINY_CONFIG, ckpt, '--csv', tmp_path / 'x.csv', *work,
                              '--data-root', empty_test,
                              '--cfg-options', 'model.head.num_classes=12'),
                    'contains no images')


def test_a_work_dir_stands_for_its_best_checkpoint(trained12):
    cfg = load_config(TINY_CONFIG, {'model.head.num_classes': 12}, data_root=trained12['data'])
    classifier = BioClassifier(cfg, trained12['work_dir'], device='cpu')
    assert classifier.checkpoint_path == trained12['best']


def test_api_errors_are_bioplugin_errors(trained12, tmp_path):
    classifier = _classifier(trained12)
    with pytest.raises(DatasetError, match='does not exist'):
        classifier.predict(str(tmp_path / 'nope.jpg'))
    with pytest.raises(DatasetError, match='uint8'):
        classifier.predict(np.zeros((10, 10, 3), np.float32))
    cfg = load_config(TINY_CONFIG, data_root=trained12['data'])  # 3-class head
    with pytest.raises(CheckpointError, match='num_classes=12'):
        BioClassifier(cfg, trained12['checkpoint'], device='cpu')
    assert issubclass(ConfigError, BioPluginError)
