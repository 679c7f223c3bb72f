# The bio_resnext recipe on a tiny ResNet at 32 px: end-to-end tests in seconds on a CPU.
_base_ = ['../../configs/bio_resnext.py']

data_root = 'data/tiny'

model = dict(
    backbone=dict(_delete_=True, type='ResNet', depth=18, stem_channels=8, base_channels=8,
                  out_indices=(3, )),
    head=dict(num_classes=3, in_channels=64, hidden_channels=16, topk=(1, )),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.7, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='BioRandomAffine', max_rotate_degree=20, max_translate_ratio=0.1,
         scaling_ratio_range=(0.9, 1.1)),
    dict(type='BioColorJitter', brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1),
    dict(type='RandomErasing', erase_prob=0.2, min_area_ratio=0.02, max_area_ratio=0.1,
         mode='const', fill_color=(103.53, 116.28, 123.675)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=36, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root,
                                               pipeline=train_pipeline))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = dict(**loader, dataset=dict(data_root=data_root, pipeline=test_pipeline))

train_cfg = dict(max_epochs=2)
default_hooks = dict(logger=dict(interval=1))
