# bio_tiny with the recipe's own loader settings (num_workers='auto', persistent workers):
# what MMPretrain's stock tools must run without --cfg-options.
_base_ = ['./bio_tiny.py']

loader = dict(num_workers='auto', persistent_workers=True)
train_dataloader = dict(**loader)
val_dataloader = dict(**loader)
test_dataloader = dict(**loader)
