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

model = dict(
    backbone=dict(
        # ImageNet weights: 'torchvision_v2' (torchvision IMAGENET1K_V2, 82.8 % top-1),
        # 'torchvision_v1' or 'mmpretrain' (79.3 %), a URL or a local file; downloads are
        # cached in the torch hub cache (~/.cache/torch/hub/checkpoints). On the command line:
        #   --cfg-options model.backbone.init_cfg.checkpoint=mmpretrain   (or a path)
        #   --cfg-options model.backbone.init_cfg=None                    (from scratch)
        init_cfg=dict(type='Pretrained', checkpoint='torchvision_v2', prefix='backbone')),
    head=dict(
        _delete_=True,
        type='BioClsHead',
        num_classes=100,  # number of class folders in train/
        in_channels=2048,
        hidden_channels=512,
        dropout=(0.3, 0.5),
        # the last Linear layer (the logits) starts from N(0, 0.01²): training starts at a loss
        # of ln C; None draws it Kaiming fan-out like the first layer (logits with a standard
        # deviation near 9, a first loss near 20; docs/small-data.md measures both)
        classifier_std=0.01,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5),
    ),
)
