_base_ = ['mmpretrain::_base_/default_runtime.py']

custom_imports = dict(imports=['bioplugin'], allow_failed_imports=False)
# resolves precision, num_workers='auto', ImageNet aliases, class weights, top-k, CPU process
# groups and the data_root of every split, so any tool that builds the Runner from the
# registry (ours, MMPretrain's tools/train.py and tools/test.py, mim) runs this config alike
runner_type = 'BioRunner'

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    # keep the latest checkpoint for --resume and the best one by validation top-1; the epoch
    # checkpoint is written after validation, so it holds the scheduler and early-stopping
    # state of that epoch; epochs of a few seconds (small sets) are saved once a minute, the
    # last one always
    checkpoint=dict(type='EpochEndCheckpointHook', interval=1, max_keep_ckpts=1,
                    save_best='accuracy/top1', rule='greater', min_seconds_between_saves=60),
    # recovery.pth inside an epoch every 30 minutes, and on SIGTERM / SIGUSR1 (preemption,
    # Slurm's time-limit warning) save, log and exit with status 75; --resume continues at
    # that batch
    recovery=dict(type='RecoveryCheckpointHook', minutes=30),
)

custom_hooks = [
    # min_delta > 0: an epoch that only ties the best top-1 does not reset the patience
    # (MMEngine counts a tie as an improvement when min_delta is 0)
    dict(type='ResumableEarlyStoppingHook', monitor='accuracy/top1', rule='greater',
         patience=10, min_delta=1e-4),
    dict(type='ParameterCountHook', budget=100e6),
    # augmentation and dropout drawn from (seed, epoch, sample / iteration): a resumed run
    # and any num_workers give the same weights as one uninterrupted run
    dict(type='ReproducibilityHook'),
    # unreadable images are skipped and listed in <work_dir>/bad_images.txt
    dict(type='BadImageHook'),
]

randomness = dict(seed=42, deterministic=False)

# 'auto': bfloat16 autocast on CPUs with native bfloat16 (AVX512-BF16 / AMX) and on GPUs
# (float16 + loss scaling where a GPU lacks bfloat16), float32 elsewhere; channels-last for
# mixed-precision inference, and for training on GPUs. tools/train.py and tools/test.py
# --fp32 / --amp override it
precision = 'auto'
# memory layout of the convolutions at inference: 'auto' (channels-last under mixed
# precision; float32 on a CPU: whichever of NCHW and channels-last a short probe on the first
# batch finds faster, cached per CPU, torch version and model in
# ~/.cache/bioplugin/layout.json), or 'channels_last' / 'nchw' to pin one
inference_layout = 'auto'
