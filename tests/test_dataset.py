import os
import os.path as osp

import pytest

from bioplugin.datasets import BioDataset, sort_class_names
from bioplugin.errors import DatasetError

from helpers import make_image_folder, write_image

TWELVE = [str(i) for i in range(12)]


def test_sort_class_names_numeric_when_all_integers_natural_otherwise():
    assert sort_class_names(['10', '2', '0', '1', '11']) == ['0', '1', '2', '10', '11']
    assert sort_class_names(['sp10', 'sp2', 'Sp1', 'beetle']) == ['beetle', 'Sp1', 'sp2', 'sp10']
    assert sort_class_names(['007', '7', '10']) == ['007', '7', '10']


def test_twelve_numeric_folders_label_i_is_folder_i(tmp_path):
    root = make_image_folder(str(tmp_path), TWELVE, per_class=2, val_per_class=1)
    train = BioDataset(data_root=root, data_prefix='train')
    assert train.metainfo['classes'] == tuple(TWELVE)
    assert len(train) == 24
    for index in range(len(train)):
        info = train.get_data_info(index)
        assert osp.basename(osp.dirname(info['img_path'])) == str(info['gt_label'])
    assert sorted(set(train.get_gt_labels().tolist())) == list(range(12))

    val = BioDataset(data_root=root, data_prefix='val', classes_from='train')
    assert val.metainfo['classes'] == tuple(TWELVE)
    assert all(osp.basename(osp.dirname(val.get_data_info(i)['img_path']))
               == str(val.get_data_info(i)['gt_label']) for i in range(len(val)))


def test_unlabeled_test_folder_knows_the_class_names(tmp_path):
    root = make_image_folder(str(tmp_path), TWELVE, per_class=1, val_per_class=1,
                             test_images=5)
    test = BioDataset(data_root=root, data_prefix='test', classes_from='train', labeled=False)
    assert test.metainfo['classes'] == tuple(TWELVE)
    assert len(test) == 5
    assert all('gt_label' not in test.get_data_info(i) for i in range(5))

    named = BioDataset(data_root=root, data_prefix='test', classes=['b', 'a'], labeled=False)
    assert named.metainfo['classes'] == ('b', 'a')


def test_extensions_are_case_insensitive_and_other_files_are_skipped(tmp_path):
    folder = tmp_path / 'train' / 'moth'
    for name in ('a.JPG', 'b.Png', 'c.jpeg', 'd.TIFF'):
        write_image(str(folder / name), 0)
    (folder / 'notes.txt').write_text('not an image')
    write_image(str(folder / '.hidden.jpg'), 0)
    write_image(str(folder / 'nested' / 'e.jpg'), 0)
    dataset = BioDataset(data_root=str(tmp_path), data_prefix='train')
    names = [osp.basename(dataset.get_data_info(i)['img_path']) for i in range(len(dataset))]
    assert names == ['a.JPG', 'b.Png', 'c.jpeg', 'd.TIFF', 'e.jpg']


def test_explicit_classes_fix_the_label_order(tmp_path):
    root = make_image_folder(str(tmp_path), ['ant', 'bee'], per_class=1)
    dataset = BioDataset(data_root=root, data_prefix='train', classes=['bee', 'ant'])
    assert dataset.metainfo['classes'] == ('bee', 'ant')
    first = dataset.get_data_info(0)
    assert first['gt_label'] == 0 and '/bee/' in first['img_path']


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match='does not exist'):
        BioDataset(data_root=str(tmp_path / 'nowhere'), data_prefix='train')


def test_no_images_at_all_is_a_clear_error(tmp_path):
    (tmp_path / 'train').mkdir()
    with pytest.raises(DatasetError, match='no class folders and no images'):
        BioDataset(data_root=str(tmp_path), data_prefix='train')
    (tmp_path / 'test').mkdir()
    (tmp_path / 'train' / 'x').mkdir()
    with pytest.raises(DatasetError, match='contains no images'):
        BioDataset(data_root=str(tmp_path), data_prefix='test', classes_from='train',
                   labeled=False)


def test_class_folder_without_images_is_a_clear_error(tmp_path):
    root = make_image_folder(str(tmp_path), ['a', 'b'], per_class=1)
    os.makedirs(osp.join(root, 'train', 'c'))
    with pytest.raises(DatasetError, match="train/c' contains no images"):
        BioDataset(data_root=root, data_prefix='train')


def test_val_classes_that_differ_from_train_are_a_clear_error(tmp_path):
    root = make_image_folder(str(tmp_path), ['a', 'b'], per_class=1)
    write_image(osp.join(root, 'val', 'z', 'x.jpg'), 0)
    with pytest.raises(DatasetError, match=r"only here \['z'\], missing here none"):
        BioDataset(data_root=root, data_prefix='val', classes_from='train')


def test_val_missing_a_train_class_is_a_clear_error(tmp_path):
    root = make_image_folder(str(tmp_path), ['a', 'b', 'c'], per_class=1)
    for name in os.listdir(osp.join(root, 'val', 'c')):
        os.remove(osp.join(root, 'val', 'c', name))
    os.rmdir(osp.join(root, 'val', 'c'))
    with pytest.raises(DatasetError, match=r"only here none, missing here \['c'\]"):
        BioDataset(data_root=root, data_prefix='val', classes_from='train')


def test_unlabeled_split_without_class_source_is_a_clear_error(tmp_path):
    root = make_image_folder(str(tmp_path), ['a'], per_class=1)
    with pytest.raises(DatasetError, match='needs class names'):
        BioDataset(data_root=root, data_prefix='test', labeled=False)


def test_images_outside_class_folders_in_a_labeled_split_are_a_clear_error(tmp_path):
    root = make_image_folder(str(tmp_path), ['a'], per_class=1)
    with pytest.raises(DatasetError, match='outside any class folder'):
        BioDataset(data_root=root, data_prefix='test')
