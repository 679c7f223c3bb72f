# bio_tiny with Mixup / CutMix batches (configs/ablation/plankton_cpu_cosine_mix.py's batch
# augmentations), end to end on the tiny ResNet in seconds.
_base_ = ['./bio_tiny.py']

model = dict(
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2), dict(type='CutMix', alpha=1.0)]),
)
