# Ablation on the demo config: the learning rate warmed up linearly over the first epoch, then
# cosine decay to 1 % at max_epochs, instead of the plateau schedule (docs/small-data.md).
_base_ = ['../bio_resnext50_plankton_cpu.py']

param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, eta_min_ratio=0.01,
         convert_to_iter_based=True),
]
