"""The reference: the seed's plain torchvision data path and training settings, written from
the recipe table (torch and torchvision only: the plain loops import it)."""
from typing import Callable, Sequence

from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# the seed's training recipe
SEED_LR = 1e-3
SEED_WEIGHT_DECAY = 1e-4
SEED_LABEL_SMOOTHING = 0.1
SEED_CLIP_NORM = 1.0


def seed_train_transform(size: int = 224) -> T.Compose:
    """The seed's training augmentation, PIL image in, normalised tensor out."""
    return T.Compose([
        T.RandomResizedCrop(size, scale=(0.7, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomRotation(20),
        T.ColorJitter(0.15, 0.15, 0.15, 0.1),
        T.RandomAffine(0, translate=(0.1, 0.1), scale=(0.9, 1.1)),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        T.RandomErasing(p=0.2, scale=(0.02, 0.1)),
    ])


def seed_test_transform(resize: int = 256, size: int = 224) -> T.Compose:
    """The seed's evaluation transform."""
    return T.Compose([T.Resize(resize), T.CenterCrop(size), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def load_rgb(path: str) -> Image.Image:
    """Open an image file as the seed did: PIL, converted to RGB."""
    with Image.open(path) as image:
        return image.convert('RGB')


class ImagePathDataset(Dataset):
    """Image files through a torchvision transform (no labels), for the inference loop."""

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths = list(paths)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        return self.transform(load_rgb(self.paths[index]))
