# CPU-sized bio_resnext for the plankton demo set (`make demo`, a few minutes on 2 cores).
# The recipe of configs/bio_resnext.py with a ResNeXt-50 32x4d at 128 px: the full ResNeXt101
# at 224 px needs a GPU. The backbone starts from torchvision's ImageNet weights when they are
# in the torch hub cache or can be downloaded (~96 MB), and from scratch otherwise; the log
# says which.
_base_ = ['./bio_resnext.py']

data_root = 'data/plankton'

model = dict(
    backbone=dict(depth=50, groups=32, width_per_group=4,
                  init_cfg=dict(type='Pretrained', prefix='backbone', if_unavailable='scratch',
                                checkpoint='torchvision://resnext50_32x4d.imagenet1k_v2')),
    head=dict(num_classes=6, in_channels=2048),
)

image_size = 128
train_pipeline = [
    dict(type='BioLoadImage', decode=False),
    dict(type='BioRandomResizedAffine', scale=image_size, crop_ratio_range=(0.7, 1.0),
         flip_prob=0.5, max_rotate_degree=20, max_translate_ratio=0.1,
         scaling_ratio_range=(0.9, 1.1)),
    dict(type='BioColorJitter', brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1),
    dict(type='RandomErasing', erase_prob=0.2, min_area_ratio=0.02, max_area_ratio=0.1,
         mode='const', fill_color='mean'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='BioLoadImage', min_size=image_size * 8 // 7),
    dict(type='ResizeEdge', scale=image_size * 8 // 7, edge='short'),  # 256:224
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=16, dataset=dict(pipeline=test_pipeline))

train_cfg = dict(max_epochs=60)
default_hooks = dict(logger=dict(interval=5))
