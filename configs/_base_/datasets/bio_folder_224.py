# ImageNet-style specimen folder: <data_root>/train/<class>/, val/<class>/, test/ (unlabeled).
# Class folders are ordered numerically when all names are integers (0, 1, 2, ..., 10).
# BioRunner gives the top-level data_root to every split that does not set its own.
dataset_type = 'BioDataset'
data_root = 'data/bio'

# ImageNet statistics in RGB; images are loaded as BGR and converted by the preprocessor.
mean_rgb = [123.675, 116.28, 103.53]
std_rgb = [58.395, 57.12, 57.375]
data_preprocessor = dict(mean=mean_rgb, std=std_rgb, to_rgb=True)

train_pipeline = [
    # upright 3-channel BGR from any image file; unreadable files are logged and skipped.
    # decode=False: the next step decodes large JPEGs at 1/2-1/8 size when the crop allows
    dict(type='BioLoadImage', decode=False),
    # RandomResizedCrop(224, area 0.7-1.0), horizontal flip, rotation ±20°, translate 0.1
    # and scale 0.9-1.1, sampled like torchvision, composed into one warp to 224 x 224
    dict(type='BioRandomResizedAffine', scale=224, crop_ratio_range=(0.7, 1.0), flip_prob=0.5,
         max_rotate_degree=20, max_translate_ratio=0.1, scaling_ratio_range=(0.9, 1.1)),
    dict(type='BioColorJitter', brightness=0.15, contrast=0.15, saturation=0.15, hue=0.1),
    # erase with the data preprocessor's mean colour, i.e. value 0 after normalisation
    dict(type='RandomErasing', erase_prob=0.2, min_area_ratio=0.02, max_area_ratio=0.1,
         mode='const', fill_color='mean'),
    dict(type='PackInputs'),
]

test_pipeline = [
    # large JPEGs are decoded at 1/2, 1/4 or 1/8 size while the short side stays >= 256
    dict(type='BioLoadImage', min_size=256),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    # one loader process per CPU core (at most 8), kept alive between epochs
    num_workers='auto',
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    # the head's BatchNorm1d cannot train on a last batch of one image
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_prefix='train',
                 pipeline=train_pipeline),
)

val_dataloader = dict(
    batch_size=64,
    num_workers='auto',
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_prefix='val', classes_from='train',
                 pipeline=test_pipeline),
)
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='SingleLabelMetric', average='macro'),
]

test_dataloader = dict(
    batch_size=64,
    num_workers='auto',
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    # one prediction row per file: an unreadable image keeps its row, flagged
    dataset=dict(type=dataset_type, data_prefix='test', classes_from='train', labeled=False,
                 bad_image_policy='placeholder', pipeline=test_pipeline),
)
# runner.test() writes <work_dir>/prediction.csv (image_name,pred_label,score); on a labeled
# split (tools/test.py evaluates val) also the metrics below, of the readable images
test_evaluator = dict(type='PredictionWriter', out_file='prediction.csv', labeled_metrics=val_evaluator)
