# Ablation of bio_resnext_plus on the demo config: head_std, and the learning rate warmed up
# linearly over the first epoch, then cosine decay to 1 % at max_epochs.
_base_ = ['./plankton_cpu_head_std.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
