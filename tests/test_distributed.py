"""Scale-out on CPU: torchrun with gloo, DDP averaging, sharded prediction; balanced sampling."""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from bioplugin.apis import load_config
from bioplugin.engine.runner import BioRunner
from bioplugin.datasets import BioDataset
from bioplugin.datasets.class_balance import class_counts, inverse_frequency_weights
from bioplugin.datasets.samplers import balanced_sampler
from bioplugin.datasets.samplers.balanced_sampler import ClassBalancedSampler

from helpers import REPO, TINY_CONFIG, make_image_folder, run_logs, run_tool

DETERMINISTIC_CONFIG = osp.join(REPO, 'tests', 'configs', 'bio_tiny_deterministic.py')


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def run_script(script, *args):
    env = dict(os.environ, PYTHON=sys.executable, PORT=free_port())
    return subprocess.run(['bash', osp.join('tools', script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ddp')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=3,
                             test_images=7)
    work_dir = str(tmp / 'work')
    result = run_script('dist_train.sh', TINY_CONFIG, '2', '--data-root', data,
                        '--work-dir', work_dir)
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(data=data, work_dir=work_dir, log=run_logs(work_dir)[0], tmp=tmp)


@pytest.mark.slow
def test_two_gloo_processes_train_validate_and_write_one_set_of_checkpoints(two_process_run):
    log, work_dir = two_process_run['log'], two_process_run['work_dir']
    assert 'Distributed training: True' in log
    for epoch in (1, 2):
        lines = re.findall(rf'Epoch\(val\) \[{epoch}\]\[\d+/\d+\]\s+accuracy/top1', log)
        assert len(lines) == 1, f'epoch {epoch} metrics logged {len(lines)} times'
    checkpoints = sorted(name for name in os.listdir(work_dir) if name.endswith('.pth'))
    assert checkpoints[-1] == 'epoch_2.pth' and len(checkpoints) == 2  # + best_*.pth
    assert len([d for d in os.listdir(work_dir) if osp.isdir(osp.join(work_dir, d))]) == 1
    # 24 images, batch 4 per process: 3 iterations per epoch on each of the 2 processes
    assert 'Epoch(train) [1][3/3]' in log


@pytest.mark.slow
def test_distributed_csv_equals_the_single_process_csv(two_process_run):
    tmp, data, work_dir = two_process_run['tmp'], two_process_run['data'], \
        two_process_run['work_dir']
    # float32 on both sides: bfloat16 rounds differently for other batch shapes
    single = run_tool(osp.join('tools', 'test.py'), TINY_CONFIG, work_dir, '--data-root', data,
                      '--csv', str(tmp / 'single.csv'), '--topk', '2', '--fp32')
    assert single.returncode == 0, single.stderr[-3000:]
    double = run_script('dist_test.sh', TINY_CONFIG, work_dir, '2', '--data-root', data,
                        '--csv', str(tmp / 'double.csv'), '--topk', '2', '--fp32')
    assert double.returncode == 0, double.stderr[-3000:]
    one = pd.read_csv(tmp / 'single.csv', dtype=str)
    two = pd.read_csv(tmp / 'double.csv', dtype=str)
    assert len(one) == 7  # an odd count: the shards were padded and the padding dropped
    assert list(one.columns) == list(two.columns)
    labels = ['image_name', 'pred_label', 'top2_label']
    pd.testing.assert_frame_equal(one[labels], two[labels])
    # other batch shapes per process change the float rounding, not more
    np.testing.assert_allclose(one[['score', 'top2_score']].astype(float),
                               two[['score', 'top2_score']].astype(float), atol=2e-6)
    evaluation = run_script('dist_test.sh', TINY_CONFIG, work_dir, '2', '--data-root', data,
                            '--work-dir', str(tmp / 'eval'))
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    assert evaluation.stdout.count('top-1 accuracy') == 1  # printed by the first process only
    assert len(pd.read_csv(tmp / 'eval' / 'predictions_val.csv')) == 9


@pytest.mark.slow
def test_one_step_on_two_processes_equals_one_process_with_the_same_global_batch(tmp_path):
    data = make_image_folder(str(tmp_path / 'data'), ['0', '1', '2', '3'], per_class=2,
                             val_per_class=1)
    options = ['--data-root', data, '--cfg-options']
    one = run_tool(osp.join('tools', 'train.py'), DETERMINISTIC_CONFIG, '--work-dir',
                   str(tmp_path / 'one'), *options, 'train_dataloader.batch_size=8')
    assert one.returncode == 0, one.stderr[-3000:]
    two = run_script('dist_train.sh', DETERMINISTIC_CONFIG, '2', '--work-dir',
                     str(tmp_path / 'two'), *options, 'train_dataloader.batch_size=4')
    assert two.returncode == 0, two.stderr[-3000:]
    assert 'Epoch(train) [1][1/1]' in run_logs(tmp_path / 'one')[0]
    assert 'Epoch(train) [1][1/1]' in run_logs(tmp_path / 'two')[0]
    single = torch.load(tmp_path / 'one' / 'epoch_1.pth')
    double = torch.load(tmp_path / 'two' / 'epoch_1.pth')
    assert single['optimizer']['state'][0]['step'].item() == 1
    for key, value in single['state_dict'].items():
        torch.testing.assert_close(double['state_dict'][key], value, atol=1e-6, rtol=1e-5,
                                   msg=key)
    # the gradients that were averaged were not zero
    assert single['optimizer']['state'][0]['exp_avg'].abs().sum() > 0
    for state in double['optimizer']['state']:
        torch.testing.assert_close(double['optimizer']['state'][state]['exp_avg'],
                                   single['optimizer']['state'][state]['exp_avg'],
                                   atol=1e-7, rtol=1e-4)


@pytest.fixture
def skewed(tmp_path):
    root = str(tmp_path / 'skewed')
    for name, count in (('common', 40), ('rare', 10), ('rarest', 2)):
        make_image_folder(root, [name], per_class=count, val_per_class=1, test_images=0)
    return BioDataset(data_root=root, data_prefix='train')


def _shares(indices, labels, num_classes):
    return np.bincount(labels[indices], minlength=num_classes) / len(indices)


def test_balanced_sampler_draws_classes_near_uniformly(skewed):
    labels = np.asarray(skewed.get_gt_labels())
    assert list(class_counts(skewed)) == [40, 10, 2]
    sampler = ClassBalancedSampler(skewed, seed=0, num_samples=6000)
    shares = _shares(list(sampler), labels, 3)
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.03)
    sqrt = ClassBalancedSampler(skewed, mode='sqrt', seed=0, num_samples=6000)
    expected = np.sqrt([40, 10, 2]) / np.sqrt([40, 10, 2]).sum()
    np.testing.assert_allclose(_shares(list(sqrt), labels, 3), expected, atol=0.03)
    sampler.set_epoch(1)
    assert list(sampler)[:50] != list(ClassBalancedSampler(skewed, seed=0,
                                                           num_samples=6000))[:50]


def test_balanced_sampler_gives_every_rank_its_own_share(skewed, monkeypatch):
    shards = []
    for rank in (0, 1):
        monkeypatch.setattr(balanced_sampler, 'get_dist_info', lambda rank=rank: (rank, 2))
        sampler = ClassBalancedSampler(skewed, seed=3)
        sampler.set_epoch(5)
        shards.append(list(sampler))
        full = sampler.epoch_indices().tolist()
    assert len(shards[0]) == len(shards[1]) == 26  # 52 images over 2 processes
    assert [i for pair in zip(*shards) for i in pair] == full  # disjoint positions, whole epoch


def test_inverse_frequency_loss_weights_from_the_training_folders(skewed, tmp_path):
    counts = np.array([40, 10, 2])
    uniform = inverse_frequency_weights(counts)
    np.testing.assert_allclose(uniform, 52 / (3 * counts))  # scikit-learn's "balanced"
    sqrt = inverse_frequency_weights(counts, 'sqrt')
    assert np.sum(sqrt * counts) == pytest.approx(52) and sqrt[2] / sqrt[0] == pytest.approx(
        np.sqrt(20))
    cfg = load_config(TINY_CONFIG, {'model.head.loss.class_weight': 'inverse_frequency'},
                      data_root=osp.dirname(skewed.img_prefix), work_dir=str(tmp_path))
    runner = BioRunner.from_cfg(cfg)
    runner.check_training_data()  # what training does first
    weighted = [module.class_weight for module in runner.model.modules()
                if getattr(module, 'class_weight', None) is not None]
    assert len(weighted) == 1
    np.testing.assert_allclose(weighted[0], uniform, rtol=1e-5)


def test_dataset_stats_prints_the_class_histogram(skewed):
    result = run_tool(osp.join('tools', 'data', 'dataset_stats.py'),
                      osp.dirname(skewed.img_prefix))
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r'common\s+40\s+1\s+#{40}', result.stdout)
    assert 'imbalance (largest / smallest class): 20.0' in result.stdout


@pytest.mark.slow
def test_training_with_the_balanced_sampler_from_the_command_line(skewed, tmp_path):
    result = run_tool(osp.join('tools', 'train.py'), TINY_CONFIG, '--data-root',
                      osp.dirname(skewed.img_prefix), '--work-dir', str(tmp_path),
                      '--cfg-options', 'train_dataloader.sampler.type=ClassBalancedSampler',
                      'train_dataloader.sampler.mode=sqrt', 'train_cfg.max_epochs=1')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'Epoch(train) [1][13/13]' in run_logs(tmp_path)[0]  # 52 images / batch 4


def test_gpu_process_groups_are_joined_with_the_configs_dist_cfg(monkeypatch):
    """On GPUs the group is joined before the Runner exists, so with MMEngine's own settings
    (``env_cfg.dist_cfg``: backend, timeout), not a fixed backend."""
    from mmengine.config import Config

    from bioplugin.engine import distributed
    joined = []
    monkeypatch.setattr(distributed.torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(distributed.torch_dist, 'is_initialized', lambda: False)
    monkeypatch.setattr(distributed, 'init_dist', lambda launcher, **kwargs: joined.append(
        (launcher, kwargs)))
    distributed.configure_distributed(Config(dict(
        launcher='pytorch', env_cfg=dict(dist_cfg=dict(backend='nccl', timeout=600)))))
    distributed.configure_distributed(Config(dict(launcher='slurm')))
    assert joined == [('pytorch', dict(backend='nccl', timeout=600)),
                      ('slurm', dict(backend='nccl'))]
