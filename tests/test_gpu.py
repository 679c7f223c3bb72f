"""On a CUDA GPU, through the tools as a user runs them: bfloat16 autocast (``precision='auto'``),
float16 with loss scaling, float32, channels-last training, pinned memory with loader workers,
deterministic cuDNN, checkpoints that move between CPU and GPU, NCCL process groups, and the
real demo images. Every test is skipped without CUDA; ``tools/gpu_check.sh`` runs them on a GPU
machine (``pytest -m gpu``, see docs/gpu.md).

Tests that share the trained ``auto_run`` are in one xdist group (``--dist loadgroup``)."""
import glob
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
from mmengine.config import Config

from bioplugin.engine.checkpoint_io import read_checkpoint

import helpers
from helpers import (REPO, TINY_CONFIG, assert_same_weights, env_with_tests_on_path,
                     final_weights, killing_config, make_image_folder, mmpretrain_tool)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')]

TRAIN = osp.join('tools', 'train.py')
TEST = osp.join('tools', 'test.py')
TEST_IMAGES = 120  # enough that a 99 % agreement allows one disagreement
DETERMINISTIC = 'randomness.deterministic=True'
PLANKTON = osp.join(REPO, 'data', 'plankton')
DEMO_CONFIG = osp.join(REPO, 'configs', 'bio_resnext50_plankton_cpu.py')


def run_tool(script, *args, **options):
    """tests/helpers.run_tool; our tools with MMEngine's whole console (these tests read its
    lines)."""
    ours = str(script).startswith('tools')
    return helpers.run_tool(script, *args, *(['--verbose'] if ours else []), **options)


def log_of(result) -> str:
    return result.stdout + result.stderr


def succeeded(result) -> str:
    """The output of a finished tool run, after checking that it succeeded."""
    assert result.returncode == 0, log_of(result)[-4000:]
    return log_of(result)


def dumped_config(work_dir, config=TINY_CONFIG) -> Config:
    """The config as the Runner trained with it (BioRunner's resolved copy, kept in every
    checkpoint; the work dir keeps the config as declared)."""
    latest = max(glob.glob(osp.join(str(work_dir), 'epoch_*.pth')), key=osp.getmtime)
    return Config.fromstring(read_checkpoint(latest)['meta']['cfg'], '.py')


def train_tiny(data, work_dir, *extra, **options):
    """tests/helpers.train_tiny with MMEngine's whole console (these tests read its lines)."""
    return helpers.train_tiny(data, work_dir, *extra, '--verbose', **options)


def checkpoint(work_dir, name: str) -> dict:
    return read_checkpoint(osp.join(work_dir, name))


def spatial_conv_weights(state_dict: dict) -> dict:
    """The 3x3 (and larger) convolution weights: their layout tells NCHW from channels-last
    (a 1x1 kernel is contiguous in both)."""
    return {key: value for key, value in state_dict.items()
            if value.dim() == 4 and value.shape[2:] != (1, 1) and value.shape[1] > 1}


def is_channels_last(tensor: torch.Tensor) -> bool:
    return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()


def layouts(state_dict: dict) -> set:
    return {is_channels_last(value) for value in spatial_conv_weights(state_dict).values()}


def moments(optimizer_state: dict) -> list:
    """AdamW's first moments of the 4-d parameters (spatial kernels), from a checkpoint."""
    return [state['exp_avg'] for state in optimizer_state['state'].values()
            if state['exp_avg'].dim() == 4 and state['exp_avg'].shape[2:] != (1, 1)
            and state['exp_avg'].shape[1] > 1]


def predictions(work_dir, data, csv, *flags) -> pd.DataFrame:
    """``tools/test.py WORK_DIR --csv`` (the best checkpoint) as a table of strings."""
    succeeded(run_tool(TEST, TINY_CONFIG, str(work_dir), '--data-root', data, '--csv', str(csv),
                       *flags))
    return pd.read_csv(csv, dtype=str, keep_default_na=False)


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def run_script(script: str, *args, env=None):
    """``tools/dist_train.sh`` / ``dist_test.sh`` with this interpreter, on a free port."""
    env = dict(env or os.environ, PYTHON=sys.executable, PORT=free_port())
    return subprocess.run(['bash', osp.join('tools', script), *args, '--verbose'], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Three classes, 8 training images each (6 iterations of 4 per epoch), 3 val images each,
    120 test images."""
    return make_image_folder(str(tmp_path_factory.mktemp('gpu') / 'data'), ['0', '1', '2'],
                             per_class=8, val_per_class=3, test_images=TEST_IMAGES)


@pytest.fixture(scope='module')
def auto_run(data, tmp_path_factory):
    """Six epochs (the model tells the classes apart) with the config's own precision
    ('auto') and two pinned loader workers."""
    work_dir = tmp_path_factory.mktemp('auto')
    log = succeeded(train_tiny(data, work_dir, 'train_dataloader.num_workers=2',
                               'train_dataloader.persistent_workers=True', epochs=6))
    return dict(work_dir=work_dir, log=log)


# ------------------------------------------------------------------ precision='auto': bfloat16

@pytest.mark.xdist_group('auto')
def test_auto_precision_trains_in_bfloat16_channels_last_with_pinned_workers(auto_run):
    assert torch.cuda.is_bf16_supported()  # the GPUs this check is written for (H100, H200)
    cfg = dumped_config(auto_run['work_dir'])
    assert cfg.precision == 'bf16'
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert dict(type='ChannelsLastHook') in cfg.custom_hooks
    assert cfg.train_dataloader.pin_memory is True and cfg.train_dataloader.num_workers == 2
    assert cfg.val_cfg.fp16 is True
    log = auto_run['log']
    assert 'CUDA available: True' in log
    assert 'Epoch(train) [6][6/6]' in log
    assert 'Validation with bfloat16 autocast on cuda.' in log  # not float16, the GPU default
    saved = checkpoint(auto_run['work_dir'], 'epoch_6.pth')
    assert layouts(saved['state_dict']) == {True}  # trained channels-last ...
    assert all(v.dtype == torch.float32 for v in saved['state_dict'].values()
               if v.is_floating_point())  # ... on float32 master weights
    assert {is_channels_last(m) for m in moments(saved['optimizer'])} == {True}
    assert 'loss_scaler' not in saved['optimizer']  # bfloat16 needs no loss scaling


@pytest.mark.xdist_group('auto')
def test_auto_run_resumes_evaluates_and_predicts_in_bfloat16(auto_run, data, tmp_path):
    work_dir = auto_run['work_dir']
    resumed = succeeded(train_tiny(data, work_dir, '--resume', '--no-calibrate', epochs=7))
    assert f'Resuming from {work_dir}/epoch_6.pth' in resumed
    assert 'Epoch(train) [7][6/6]' in resumed and 'Epoch(train) [6]' not in resumed
    assert 'Optimizer state:' not in resumed  # the same device: layouts already matched
    assert osp.isfile(osp.join(work_dir, 'epoch_7.pth'))
    evaluation = succeeded(run_tool(TEST, TINY_CONFIG, str(work_dir), '--data-root', data,
                                    '--work-dir', str(tmp_path / 'eval')))
    assert 'top-1 accuracy' in evaluation
    assert 'Test with bfloat16 autocast on cuda.' in evaluation
    rows = predictions(work_dir, data, tmp_path / 'prediction.csv')
    assert len(rows) == TEST_IMAGES and set(rows.pred_label) <= {'0', '1', '2'}


@pytest.mark.xdist_group('auto')
def test_bfloat16_top1_agrees_with_float32_on_99_percent(auto_run, data, tmp_path):
    bf16 = predictions(auto_run['work_dir'], data, tmp_path / 'bf16.csv')
    fp32 = predictions(auto_run['work_dir'], data, tmp_path / 'fp32.csv', '--fp32')
    assert list(bf16.image_name) == list(fp32.image_name) and len(bf16) == TEST_IMAGES
    assert fp32.pred_label.value_counts(normalize=True).max() < 0.5  # not one class for all
    agreement = (bf16.pred_label == fp32.pred_label).mean()
    assert agreement >= 0.99, agreement
    scores = bf16.score.astype(float).to_numpy(), fp32.score.astype(float).to_numpy()
    assert np.abs(scores[0] - scores[1]).max() < 0.05
    assert not np.array_equal(*scores)  # bfloat16 really ran


# ------------------------------------------------------------------ float16 and float32

def test_float16_trains_with_loss_scaling_resumes_and_predicts(data, tmp_path):
    fp16 = 'precision=fp16'  # forced: 'auto' picks bfloat16 on a GPU that has it
    work_dir = tmp_path / 'work'
    log = succeeded(train_tiny(data, work_dir, fp16, '--no-calibrate', epochs=2))
    cfg = dumped_config(work_dir)
    assert cfg.precision == 'fp16'
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.loss_scale == 'dynamic'
    assert 'Validation with float16 autocast on cuda.' in log
    saved = checkpoint(work_dir, 'epoch_2.pth')
    scaler = saved['optimizer']['loss_scaler']  # MMEngine's AmpOptimWrapper keeps its GradScaler
    assert np.isfinite(scaler['scale']) and scaler['scale'] > 0
    assert layouts(saved['state_dict']) == {True}
    resumed = succeeded(train_tiny(data, work_dir, fp16, '--resume', '--no-calibrate', epochs=3))
    assert 'Resuming from' in resumed and 'Epoch(train) [3][6/6]' in resumed
    assert 'loss_scaler' in checkpoint(work_dir, 'epoch_3.pth')['optimizer']
    evaluation = succeeded(run_tool(TEST, TINY_CONFIG, str(work_dir), '--data-root', data,
                                    '--work-dir', str(tmp_path / 'eval'), '--cfg-options', fp16))
    assert 'Test with float16 autocast on cuda.' in evaluation
    rows = predictions(work_dir, data, tmp_path / 'fp16.csv', '--cfg-options', fp16)
    assert len(rows) == TEST_IMAGES


def test_fp32_trains_nchw_without_autocast_resumes_and_predicts(data, tmp_path):
    """Also with cuDNN's autotuner on (MMEngine's ``env_cfg.cudnn_benchmark``; the recipe
    leaves it off)."""
    work_dir = tmp_path / 'work'
    log = succeeded(train_tiny(data, work_dir, 'env_cfg.cudnn_benchmark=True', '--fp32',
                               '--no-calibrate', epochs=2))
    assert 'cudnn_benchmark: True' in log  # MMEngine's runtime environment
    cfg = dumped_config(work_dir)
    assert cfg.precision == 'fp32' and cfg.optim_wrapper.get('type', 'OptimWrapper') == \
        'OptimWrapper'
    assert not any(hook.get('type') == 'ChannelsLastHook' for hook in cfg.custom_hooks)
    assert 'autocast on cuda' not in log
    saved = checkpoint(work_dir, 'epoch_2.pth')
    assert layouts(saved['state_dict']) == {False}
    succeeded(train_tiny(data, work_dir, '--fp32', '--resume', '--no-calibrate', epochs=3))
    evaluation = succeeded(run_tool(TEST, TINY_CONFIG, str(work_dir), '--data-root', data,
                                    '--work-dir', str(tmp_path / 'eval'), '--fp32'))
    assert 'top-1 accuracy' in evaluation and 'autocast on cuda' not in evaluation
    assert len(predictions(work_dir, data, tmp_path / 'fp32.csv', '--fp32')) == TEST_IMAGES


def test_amp_flags_of_our_and_mmpretrains_train_tools_pick_bfloat16(data, tmp_path):
    """``--amp`` asks for mixed precision; MMPretrain's own flag asks for its float16
    AmpOptimWrapper, which BioRunner turns into the config's precision (bfloat16 here)."""
    ours = tmp_path / 'ours'
    succeeded(run_tool(TRAIN, TINY_CONFIG, '--data-root', data, '--work-dir', str(ours), '--amp',
                       '--no-calibrate', '--cfg-options', 'train_cfg.max_epochs=1',
                       'precision=fp32'))
    assert dumped_config(ours).precision == 'bf16'  # --amp wins over the config's fp32
    stock = tmp_path / 'stock'
    succeeded(run_tool(mmpretrain_tool('train.py'), TINY_CONFIG, '--work-dir', str(stock),
                       '--amp', '--cfg-options', f'data_root={data}', 'train_cfg.max_epochs=1'))
    cfg = dumped_config(stock)
    assert cfg.precision == 'bf16' and cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert 'loss_scale' not in cfg.optim_wrapper


# ------------------------------------------------------------------ reproducibility

def test_a_killed_deterministic_run_resumes_bit_identical(data, tmp_path):
    """``randomness.deterministic=True``: deterministic cuDNN kernels, so the GPU run killed
    after iteration 10 and resumed from its recovery checkpoint (iteration 8) ends with the
    same weights, bit for bit, as the uninterrupted one."""
    uninterrupted = tmp_path / 'uninterrupted'
    log = succeeded(train_tiny(data, uninterrupted, DETERMINISTIC, '--no-calibrate', epochs=3))
    assert 'deterministic: True' in log  # MMEngine's runtime environment
    config = killing_config(tmp_path, hook=dict(type='KillAtIterationHook', iteration=10))
    killed_dir = tmp_path / 'killed'
    killed = train_tiny(data, killed_dir, DETERMINISTIC, 'default_hooks.recovery.interval=4',
                        '--no-calibrate', config=config, env=env_with_tests_on_path())
    assert killed.returncode == -9, log_of(killed)[-3000:]
    assert checkpoint(killed_dir, 'recovery.pth')['meta']['iter'] == 8
    resumed = succeeded(train_tiny(data, killed_dir, DETERMINISTIC, '--resume',
                                   '--no-calibrate', epochs=3))
    assert 'Resuming epoch 2 at batch 3 of 6' in resumed
    assert_same_weights(final_weights(uninterrupted), final_weights(killed_dir))


def test_checkpoints_move_between_cpu_and_gpu(data, tmp_path):
    """A CPU epoch (NCHW moments) resumed on the GPU (channels-last parameters), and that
    GPU epoch resumed on the CPU: the moments are re-laid for the fused AdamW kernel."""
    cpu = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    on_cpu = succeeded(train_tiny(data, tmp_path, '--no-calibrate', epochs=1, env=cpu))
    assert 'CUDA available: False' in on_cpu
    on_gpu = succeeded(train_tiny(data, tmp_path, '--resume', '--no-calibrate', epochs=2))
    assert 'Optimizer state:' in on_gpu and 'Epoch(train) [2][6/6]' in on_gpu
    assert layouts(checkpoint(tmp_path, 'epoch_2.pth')['state_dict']) == {True}
    back = succeeded(train_tiny(data, tmp_path, '--resume', '--no-calibrate', epochs=3, env=cpu))
    assert 'Optimizer state:' in back and 'Epoch(train) [3][6/6]' in back
    assert all(torch.isfinite(value).all() for value in final_weights(tmp_path).values()
               if value.is_floating_point())


# ------------------------------------------------------------------ NCCL

def test_one_nccl_process_trains_channels_last_and_predicts(data, tmp_path):
    """torchrun with one process: an NCCL process group and a DDP-wrapped model on the GPU."""
    work_dir = tmp_path / 'work'
    env = dict(os.environ, NCCL_DEBUG='VERSION')
    log = succeeded(run_script('dist_train.sh', TINY_CONFIG, '1', '--data-root', data,
                               '--work-dir', str(work_dir), '--cfg-options',
                               'train_cfg.max_epochs=2', env=env))
    assert 'Distributed training: True' in log and 'NCCL version' in log
    assert 'Epoch(train) [2][6/6]' in log
    # DDP keeps views of the parameters: BioRunner made the model channels-last before wrapping
    assert layouts(checkpoint(work_dir, 'epoch_2.pth')['state_dict']) == {True}
    csv = tmp_path / 'prediction.csv'
    succeeded(run_script('dist_test.sh', TINY_CONFIG, str(work_dir), '1', '--data-root', data,
                         '--csv', str(csv)))
    assert len(pd.read_csv(csv, dtype=str)) == TEST_IMAGES


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason=(
    'two NCCL processes need two GPUs: each process takes the GPU of its LOCAL_RANK '
    "(MMEngine's launcher calls torch.cuda.set_device(LOCAL_RANK): 'invalid device ordinal' "
    "with one GPU), and NCCL refuses two ranks on one device ('Duplicate GPU detected', "
    'ncclInvalidUsage)'))
def test_two_nccl_processes_train_and_write_one_set_of_checkpoints(data, tmp_path):
    log = succeeded(run_script('dist_train.sh', TINY_CONFIG, '2', '--data-root', data,
                               '--work-dir', str(tmp_path), '--cfg-options',
                               'train_cfg.max_epochs=2'))
    # 24 images over 2 processes, batch 4: 3 iterations per epoch on each
    assert 'Epoch(train) [2][3/3]' in log
    # metrics gathered over both processes and logged once
    assert len(re.findall(r'Epoch\(val\) \[2\]\[\d+/\d+\]\s+accuracy/top1', log)) == 1
    assert layouts(checkpoint(tmp_path, 'epoch_2.pth')['state_dict']) == {True}


# ------------------------------------------------------------------ the demo images

@pytest.mark.skipif(not osp.isfile(osp.join(PLANKTON, '.complete')),
                    reason='no demo set in data/plankton (tools/gpu_check.sh fetches it)')
def test_the_demo_config_trains_calibrates_and_predicts_on_the_gpu(tmp_path):
    """`make demo`'s config (ResNeXt-50 at 128 px) on the real microscope images, from scratch
    (no network for ImageNet weights)."""
    options = ('--cfg-options', 'train_cfg.max_epochs=3', 'model.backbone.init_cfg=None')
    log = succeeded(run_tool(TRAIN, DEMO_CONFIG, '--data-root', PLANKTON, '--work-dir',
                             str(tmp_path), *options))
    assert 'Epoch(train) [3][5/5]' in log  # 82 images, batch 16, the last one dropped
    assert 'Score calibration' in log
    csv = tmp_path / 'prediction.csv'
    succeeded(run_tool(TEST, DEMO_CONFIG, str(tmp_path), '--data-root', PLANKTON, '--csv',
                       str(csv)))
    assert len(pd.read_csv(csv, dtype=str)) == 8
