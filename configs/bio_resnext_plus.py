# bio_resnext_plus: the bio_resnext recipe with the changes that cross-validation kept
# (README, "A stronger recipe"): the last Linear layer of the head starts from N(0, 0.01²)
# instead of Kaiming fan-out, so training starts at a loss of ln C instead of ~20.
#   python tools/train.py configs/bio_resnext_plus.py --data-root path/to/data \
#       --cfg-options model.head.num_classes=<number of class folders>
_base_ = ['./bio_resnext.py']

model = dict(head=dict(classifier_std=0.01))
