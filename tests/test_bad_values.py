"""Every damaged file the tools read back and every bad number a user can type is one line that
starts with ``error:`` and exit status 2 — never a traceback; and nothing that would change
results is accepted silently."""
import json
import os
import os.path as osp
import shutil

import numpy as np
import pytest

from bioplugin.evaluation.model_facts import calibration_file, feature_bank_file
from helpers import GOLDEN, TINY_CONFIG, make_image_folder, run_tool, tool_main

GOLDEN_CHECKPOINT = osp.join(GOLDEN, 'tiny_epoch_2.pth')
GOLDEN_DATA = osp.join(GOLDEN, 'data')


def assert_one_line_error(status, stderr, *phrases):
    assert status == 2, stderr
    assert stderr.startswith('error: ') and stderr.count('\n') == 1, stderr
    assert 'Traceback' not in stderr
    for phrase in phrases:
        assert phrase in stderr, (phrase, stderr)


@pytest.fixture
def checkpoint(tmp_path):
    """The golden tiny checkpoint, copied (its calibration files are damaged per test)."""
    path = str(tmp_path / 'model' / 'best_accuracy_top1_epoch_2.pth')
    os.makedirs(osp.dirname(path))
    shutil.copyfile(GOLDEN_CHECKPOINT, path)
    return path


def predict(checkpoint, tmp_path, *extra):
    return tool_main('test.py', TINY_CONFIG, checkpoint, '--data-root', GOLDEN_DATA, '--csv',
                     tmp_path / 'p.csv', '--work-dir', tmp_path / 'w', *extra)


def calibration(temperature=1.5, open_set=None, **review) -> dict:
    return dict(temperature=temperature, review=review or None, open_set=open_set,
                warnings=[], images=24)


@pytest.mark.parametrize('content, phrase', [
    ('{"temperature": 1.5, "review"', 'is damaged'),
    (json.dumps(calibration(temperature=-1)), 'temperature -1'),
    (json.dumps(calibration(temperature=0)), 'temperature 0'),
    (json.dumps(calibration(temperature=float('nan'))), 'temperature nan'),
    (json.dumps(calibration(global_threshold=1.5, classes={})), 'review threshold 1.5'),
])
def test_a_damaged_calibration_file_is_one_line(checkpoint, tmp_path, content, phrase):
    with open(calibration_file(checkpoint), 'w') as file:
        file.write(content)
    status, _, stderr = predict(checkpoint, tmp_path)
    assert_one_line_error(status, stderr, phrase, 'tools/analysis/calibrate.py')


OPEN_SET = dict(threshold=1.0, k=2, known_rate=0.95, mean=dict(energy=0.0, distance=0.0),
                std=dict(energy=1.0, distance=1.0), warnings=[])


def test_a_damaged_feature_bank_is_one_line(checkpoint, tmp_path):
    with open(calibration_file(checkpoint), 'w') as file:
        json.dump(calibration(open_set=OPEN_SET), file)
    with open(feature_bank_file(checkpoint), 'wb') as file:
        file.write(b'PK\x03\x04 not a zip archive')
    status, _, stderr = predict(checkpoint, tmp_path)
    assert_one_line_error(status, stderr, 'Feature bank', 'is damaged')


def test_a_missing_feature_bank_says_the_unknown_column_is_off(checkpoint, tmp_path):
    with open(calibration_file(checkpoint), 'w') as file:
        json.dump(calibration(open_set=OPEN_SET), file)
    status, _, stderr = predict(checkpoint, tmp_path)
    assert status == 0, stderr
    assert 'warning: no `unknown` column: the feature bank' in stderr and 'missing' in stderr
    with open(feature_bank_file(checkpoint), 'wb') as file:  # and with one: the column
        np.savez(file, features=np.ones((4, 16), np.float32), labels=np.zeros(4))
    status, _, stderr = predict(checkpoint, tmp_path)
    assert status == 0, stderr
    assert 'unknown' in open(tmp_path / 'p.csv').readline()


@pytest.fixture
def work_dir(tmp_path):
    """A work dir as training leaves it: the config, a checkpoint and its pointer."""
    folder = tmp_path / 'work'
    folder.mkdir()
    shutil.copyfile(GOLDEN_CHECKPOINT, folder / 'epoch_2.pth')
    (folder / 'last_checkpoint').write_text('epoch_2.pth')
    shutil.copyfile(TINY_CONFIG, folder / 'bio_tiny.py')
    return folder


def test_a_non_utf8_pointer_is_one_line(work_dir, tiny_data):
    (work_dir / 'last_checkpoint').write_bytes(b'\xff\xfe\x00epoch')
    status, _, stderr = tool_main('train.py', TINY_CONFIG, '--data-root', tiny_data,
                                  '--work-dir', work_dir, '--resume')
    assert_one_line_error(status, stderr, 'last_checkpoint', 'is damaged')


def test_a_pointer_to_another_work_dir_is_refused(work_dir, tiny_data, tmp_path):
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copyfile(GOLDEN_CHECKPOINT, other / 'epoch_7.pth')
    (work_dir / 'last_checkpoint').write_text(str(other / 'epoch_7.pth'))
    status, _, stderr = tool_main('train.py', TINY_CONFIG, '--data-root', tiny_data,
                                  '--work-dir', work_dir, '--resume')
    assert_one_line_error(status, stderr, 'a file of another work dir')


def test_a_truncated_saved_config_is_one_line(work_dir, tmp_path):
    text = (work_dir / 'bio_tiny.py').read_text()
    (work_dir / 'bio_tiny.py').write_text(text[:len(text) // 2] + '\nmodel = dict(\n')
    status, _, stderr = tool_main('test.py', work_dir / 'bio_tiny.py', work_dir, '--data-root',
                                  GOLDEN_DATA, '--csv', tmp_path / 'p.csv')
    assert_one_line_error(status, stderr, 'cannot be read', 'pass the config you trained with')


@pytest.mark.parametrize('option, phrase', [
    ('model.head.num_classes=0', 'model.head.num_classes=0'),
    ('train_dataloader.batch_size=0', 'train_dataloader.batch_size=0'),
    ('optim_wrapper.optimizer.lr=-1', 'optim_wrapper.optimizer.lr=-1'),
    ('train_dataloader.num_workers=-2', 'train_dataloader.num_workers=-2'),
])
def test_a_bad_number_in_the_config_is_one_line(option, phrase, tmp_path):
    status, _, stderr = tool_main('train.py', TINY_CONFIG, '--data-root', GOLDEN_DATA,
                                  '--work-dir', tmp_path / 'w', '--cfg-options', option)
    assert_one_line_error(status, stderr, phrase)


def test_a_bad_batch_size_for_prediction_is_one_line(tmp_path):
    status, _, stderr = predict(GOLDEN_CHECKPOINT, tmp_path, '--batch-size', '0')
    assert_one_line_error(status, stderr, 'batch_size=0')


def test_a_work_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / 'taken').write_text('a file')
    status, _, stderr = tool_main('train.py', TINY_CONFIG, '--data-root', GOLDEN_DATA,
                                  '--work-dir', tmp_path / 'taken')
    assert_one_line_error(status, stderr, 'is a file, not a folder')


def test_a_csv_name_near_the_file_name_limit_is_written(tmp_path):
    name = 'p' * 250 + '.csv'  # 254 of the 255 bytes a file name may have
    status, _, stderr = tool_main('test.py', TINY_CONFIG, GOLDEN_CHECKPOINT, '--data-root',
                                  GOLDEN_DATA, '--csv', tmp_path / name, '--work-dir',
                                  tmp_path / 'w')
    assert status == 0, stderr
    assert osp.isfile(tmp_path / name)


@pytest.fixture
def linked_data(tmp_path):
    return make_image_folder(str(tmp_path / 'data'), ['0', '1', '2'], per_class=4,
                             val_per_class=2)


def test_a_symlink_loop_in_a_split_is_one_line(linked_data, tmp_path):
    os.symlink('loop', osp.join(linked_data, 'train', 'loop'))
    for tool, *args in (('train.py', TINY_CONFIG, '--work-dir', tmp_path / 'w'),
                        ('data/check_dataset.py',)):
        status, _, stderr = tool_main(tool, *args, '--data-root', linked_data) \
            if tool == 'train.py' else tool_main(tool, linked_data)
        assert_one_line_error(status, stderr, 'symbolic link that leads nowhere', 'loop')


def test_a_class_folder_linked_to_another_is_refused(linked_data, tmp_path):
    for split in ('train', 'val'):
        os.symlink(osp.join(linked_data, split, '2'), osp.join(linked_data, split, '3'))
    status, _, stderr = tool_main('train.py', TINY_CONFIG, '--data-root', linked_data,
                                  '--work-dir', tmp_path / 'w', '--cfg-options',
                                  'model.head.num_classes=4')
    assert_one_line_error(status, stderr, "Class folders '2' and '3'", 'remove the link')


def test_images_in_sub_folders_of_test_are_named_not_skipped_silently(tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(GOLDEN_DATA, data)
    nested = data / 'test' / 'later'
    nested.mkdir()
    shutil.copyfile(next((data / 'test').glob('*.jpg')), nested / 'extra.jpg')
    result = run_tool('tools/test.py', TINY_CONFIG, GOLDEN_CHECKPOINT, '--data-root', str(data),
                      '--csv', str(tmp_path / 'p.csv'), '--work-dir', str(tmp_path / 'w'))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (f"warning: 1 image(s) in sub-folders of '{data}/test' are not predicted"
            in result.stdout)


@pytest.mark.slow
def test_resuming_with_other_parameter_groups_is_one_line(tiny_data, tmp_path):
    from helpers import train_tiny
    work_dir = tmp_path / 'groups'
    started = train_tiny(tiny_data, work_dir, '--head-lr-mult', '10', epochs=1)
    assert started.returncode == 0, started.stderr[-2000:]
    resumed = train_tiny(tiny_data, work_dir, '--resume', epochs=2)
    assert_one_line_error(resumed.returncode, resumed.stderr, 'other parameter groups',
                          'resume with the options it started with')
    again = train_tiny(tiny_data, work_dir, '--resume', '--head-lr-mult', '10', epochs=2)
    assert again.returncode == 0, again.stderr[-2000:]
