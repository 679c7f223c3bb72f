# bio_resnext: ResNeXt101_32x8d fine-tuned on a folder of specimen photos.
#   python tools/train.py configs/bio_resnext.py --data-root path/to/data \
#       --cfg-options model.head.num_classes=<number of class folders>
_base_ = [
    'mmpretrain::_base_/models/resnext101_32x8d.py',
    '_base_/datasets/bio_folder_224.py',
    '_base_/schedules/bio_adamw_plateau.py',
    '_base_/bio_runtime.py',
]

data_root = 'data/bio'  # applied to the train, val and test datasets

# ImageNet weights for the backbone (MMPretrain's ResNeXt101_32x8d, 79.3% top-1).
# Offline: put the file in the torch hub cache, or pass a local path:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/weights.pth
# From scratch: --cfg-options model.backbone.init_cfg=None
imagenet_checkpoint = ('https://download.openmmlab.com/mmclassification/v0/resnext/'
                       'resnext101_32x8d_b32x8_imagenet_20210506-23a247d5.pth')

model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=imagenet_checkpoint, prefix='backbone')),
    head=dict(
        _delete_=True,
        type='BioClsHead',
        num_classes=100,  # number of class folders in train/
        in_channels=2048,
        hidden_channels=512,
        dropout=(0.3, 0.5),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5),
    ),
)
