"""Cross-validation folds, grouped splits and the resumable k-fold runs."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from bioplugin.apis.kfold import RESULT, run_kfold
from bioplugin.datasets.curation.folds import (assign_folds, labeled_images, read_groups,
                                               write_split)
from bioplugin.errors import DatasetError
from helpers import TINY_CONFIG, make_image_folder, tool_main


def check_folds(labels, fold_of, folds):
    labels = np.asarray(labels)
    assert sorted(set(fold_of)) == list(range(folds))  # every image in exactly one fold
    for label in set(labels):
        mine = np.bincount(fold_of[labels == label], minlength=folds)
        share = (labels == label).sum() / folds
        assert np.all(np.abs(mine - share) <= 1), (label, mine)  # within one image


def test_folds_are_disjoint_stratified_and_cover_every_image():
    rng = np.random.default_rng(0)
    labels = rng.choice(['a', 'b', 'c'], size=103, p=[0.6, 0.3, 0.1])
    fold_of = assign_folds(labels, 5, seed=1)
    assert len(fold_of) == len(labels)
    check_folds(labels, fold_of, 5)
    assert np.array_equal(fold_of, assign_folds(labels, 5, seed=1))  # reproducible


def test_groups_never_straddle_folds():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)  # three photos per specimen
    labels = np.repeat(rng.choice(['a', 'b'], size=40), 3)
    fold_of = assign_folds(labels, 4, groups=groups, seed=0)
    for group in np.unique(groups):
        assert len(set(fold_of[groups == group])) == 1
    assert sorted(set(fold_of)) == [0, 1, 2, 3]


def test_too_few_images_or_groups_for_the_folds():
    with pytest.raises(DatasetError, match="fewer images than the 5 folds.*'b': 2"):
        assign_folds(['a'] * 10 + ['b'] * 2, 5)
    with pytest.raises(DatasetError, match='3 groups cannot fill 4 folds'):
        assign_folds(['a'] * 12, 4, groups=[0, 1, 2] * 4)


@pytest.fixture
def data(tmp_path):
    return make_image_folder(str(tmp_path / 'data'), ['0', '1'], per_class=4, val_per_class=2,
                             test_images=1)


def test_group_file_errors_name_the_rows(data, tmp_path):
    images = labeled_images(data)
    assert len(images) == 12 and set(images.split) == {'train', 'val'}
    good = tmp_path / 'groups.csv'
    rows = ['image,group'] + [f'{name},g{i // 2}' for i, name in enumerate(images.name)]
    good.write_text('\n'.join(rows) + '\n')
    groups = read_groups(str(good), images)
    assert list(groups[:4]) == ['g0', 'g0', 'g1', 'g1']
    bad = tmp_path / 'bad.csv'
    bad.write_text('\n'.join(rows[:3] + ['nope.jpg,g9', 'img_0.jpg,g1', rows[1]]) + '\n')
    with pytest.raises(DatasetError) as error:
        read_groups(str(bad), images)
    message = str(error.value)
    assert "row 4 names 'nope.jpg', which is no image" in message
    assert "row 5 names 'img_0.jpg', which is 4 images; give its path" in message
    assert 'row 6 lists' in message and 'a second time' in message
    assert 'image(s) have no group' in message


def test_split_folders_link_every_image_once_without_name_collisions(data, tmp_path):
    images = labeled_images(data)  # train/0/img_0.jpg and val/0/img_0.jpg share a name
    is_val = np.arange(len(images)) % 3 == 0
    root = write_split(images, is_val, str(tmp_path / 'fold'))
    linked = [osp.join(folder, name) for folder, _, names in os.walk(root) for name in names
              if not name.endswith('.json')]
    assert len(linked) == len(images)
    assert sum('/val/' in path for path in linked) == is_val.sum()
    assert all(osp.islink(path) and osp.isfile(path) for path in linked)


@pytest.mark.slow
def test_kfold_runs_resume_and_the_summary_equals_the_fold_files(data, tmp_path):
    parent = str(tmp_path / 'cv')
    options = {'train_cfg.max_epochs': 1, 'model.head.num_classes': 2}
    summary = run_kfold(TINY_CONFIG, data, parent, folds=2, seeds=[0], cfg_options=options,
                        log=lambda line: None)
    finished = osp.join(parent, 'seed_0', 'fold_0', RESULT)
    first_mtime = os.path.getmtime(finished)
    lines = []
    summary = run_kfold(TINY_CONFIG, data, parent, folds=2, seeds=[0, 1], cfg_options=options,
                        log=lines.append)
    assert 'seed 0 fold 0: finished before, kept' in lines
    assert 'seed 0 fold 1: finished before, kept' in lines
    assert os.path.getmtime(finished) == first_mtime  # not run again
    results = [json.load(open(osp.join(parent, f'seed_{s}', f'fold_{f}', RESULT)))
               for s in (0, 1) for f in (0, 1)]
    top1 = [result['top1'] for result in results]
    assert summary['runs'] == 4
    assert summary['top1']['mean'] == pytest.approx(np.mean(top1))
    assert summary['top1']['std'] == pytest.approx(np.std(top1, ddof=1))
    assert json.load(open(osp.join(parent, 'kfold_summary.json')))['top1'] == summary['top1']
    # each fold's held-out images are its val split: together every image once
    held_out = [name for fold in (0, 1) for name in json.load(open(
        osp.join(parent, 'folds', f'fold_{fold}', 'fold_manifest.json')))['val']]
    assert sorted(held_out) == sorted(labeled_images(data).name)
    assert sum(result['val_images'] for result in results[:2]) == 12


def test_split_tool_makes_a_grouped_stratified_val_split(tmp_path):
    source = tmp_path / 'photos'
    make_image_folder(str(source / 'tmp'), ['a', 'b'], per_class=10, val_per_class=0,
                      test_images=0)
    os.rename(source / 'tmp' / 'train', source / 'classes')
    groups = tmp_path / 'groups.csv'
    names = sorted(f'{label}/img_{i}.jpg' for label in 'ab' for i in range(10))
    groups.write_text('image,group\n' + ''.join(f'{name},{name[0]}{int(name[6:-4]) // 2}\n'
                                                for name in names))
    status, stdout, stderr = tool_main('data/split.py', str(source / 'classes'),
                                       str(tmp_path / 'out'), '--val-fraction', '0.2',
                                       '--group-file', str(groups))
    assert status == 0, stderr
    val = {label: sorted(os.listdir(tmp_path / 'out' / 'val' / label)) for label in 'ab'}
    assert [len(files) for files in val.values()] == [2, 2]  # 20 % of each class
    for label, files in val.items():  # the two photos of a group go together
        numbers = sorted(int(name.split('_')[-1][:-4]) for name in files)
        assert numbers[0] // 2 == numbers[1] // 2
    assert 'Wrote' in stdout
    status, _, stderr = tool_main('data/split.py', str(source / 'classes'),
                                  str(tmp_path / 'out2'), '--val-fraction', '0.9')
    assert status == 2 and '--val-fraction' in stderr
