"""The plain PyTorch loop of the recipe, what a user would write without MMEngine: the
reference of ``tools/benchmark_small_run.py``.

    python tools/benchmarking/plain_run.py DATA_ROOT OUT.json --depth 50 --groups 32 \\
        --width-per-group 4 --num-classes 6 --image-size 128 --epochs 5

torchvision's ResNet / ResNeXt with the recipe's head, the recipe's torchvision augmentation,
AdamW, label-smoothed cross-entropy, gradient-norm clipping, ReduceLROnPlateau on val top-1;
each epoch trains, validates and saves the weights when val top-1 improves. Imports torch
and torchvision only (no MMEngine, no bioplugin); writes the wall-clock stamps of its phases
to OUT.json.
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

# reference.py on its own, not through the benchmarking package (which loads MMEngine)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from reference import (SEED_CLIP_NORM, SEED_LABEL_SMOOTHING, SEED_LR,  # noqa: E402
                       SEED_WEIGHT_DECAY, seed_test_transform, seed_train_transform)

LAYERS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]),
          50: (Bottleneck, [3, 4, 6, 3]), 101: (Bottleneck, [3, 4, 23, 3]),
          152: (Bottleneck, [3, 8, 36, 3])}


def build_model(args) -> nn.Module:
    block, layers = LAYERS[args.depth]
    model = ResNet(block, layers, groups=args.groups, width_per_group=args.width_per_group)
    model.fc = nn.Sequential(
        nn.Dropout(0.3), nn.Linear(model.fc.in_features, args.hidden_channels),
        nn.ReLU(inplace=True), nn.BatchNorm1d(args.hidden_channels), nn.Dropout(0.5),
        nn.Linear(args.hidden_channels, args.num_classes))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('data_root')
    parser.add_argument('out')
    for name, default in (('depth', 50), ('groups', 1), ('width-per-group', 64),
                          ('hidden-channels', 512), ('num-classes', 2), ('image-size', 224),
                          ('epochs', 5), ('batch-size', 16), ('num-workers', 2)):
        parser.add_argument(f'--{name}', type=int, default=default)
    parser.add_argument('--lr', type=float, default=SEED_LR)
    parser.add_argument('--seed', type=int, default=42)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    model = build_model(args)
    size = args.image_size
    train_set = ImageFolder(osp.join(args.data_root, 'train'), seed_train_transform(size))
    val_set = ImageFolder(osp.join(args.data_root, 'val'),
                          seed_test_transform(size * 8 // 7, size))
    loader = dict(batch_size=args.batch_size, num_workers=args.num_workers,
                  persistent_workers=args.num_workers > 0)
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, **loader)
    val_loader = DataLoader(val_set, **loader)
    criterion = nn.CrossEntropyLoss(label_smoothing=SEED_LABEL_SMOOTHING)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr,
                                  weight_decay=SEED_WEIGHT_DECAY,
                                  fused=True)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, 'max', factor=0.2,
                                                           patience=3)
    stamps = dict(train=[], val=[])
    best = -1.0
    for _ in range(args.epochs):
        start = time.time()
        model.train()
        for images, labels in train_loader:
            loss = criterion(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), SEED_CLIP_NORM)
            optimizer.step()
        stamps['train'].append([start, time.time()])
        start = time.time()
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in val_loader:
                correct += int((model(images).argmax(1) == labels).sum())
        top1 = 100.0 * correct / len(val_set)
        scheduler.step(top1)
        stamps['val'].append([start, time.time()])
        if top1 > best:
            best = top1
            torch.save(model.state_dict(), osp.join(osp.dirname(args.out), 'best.pth'))
    stamps['done'] = time.time()
    stamps['best_top1'] = best
    with open(args.out, 'w') as file:
        json.dump(stamps, file)
    return 0


if __name__ == '__main__':
    sys.exit(main())
