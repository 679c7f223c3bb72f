# Ablation of bio_resnext_plus on the demo config: head_std_cosine, and Mixup / CutMix
# (one of the two per batch) on the training batches.
_base_ = ['./plankton_cpu_head_std_cosine.py']

model = dict(train_cfg=dict(augments=[dict(type='Mixup', alpha=0.2),
                                      dict(type='CutMix', alpha=1.0)]))
