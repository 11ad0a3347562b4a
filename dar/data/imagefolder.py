"""ImageNet as an ImageFolder tree (train split), with ADM's centre crop.

Layout: root/<class folder>/<image files>. Labels are the index of the class
folder in sorted order (ImageNet's synset ids sort to the standard labels).
Preprocessing is ADM's `center_crop_arr`: halve with a box filter while the
short side is at least twice the target, resize with bicubic so the short
side equals the target, then crop the centre. Images come out in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dar.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPEG", ".JPG", ".PNG")


class DatasetError(DataError):
    """A problem with a dataset on disk; the message names the path and the fix."""


def center_crop_arr(image: Image.Image, image_size: int) -> np.ndarray:
    """ADM centre crop: returns uint8 [image_size, image_size, 3]."""
    while min(*image.size) >= 2 * image_size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = image_size / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.array(image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return arr[top : top + image_size, left : left + image_size]


class ImageFolderDataset(torch.utils.data.Dataset):
    """Items: (image [3, S, S] float32 in [-1, 1], label int)."""

    def __init__(self, root: str | Path, image_size: int = 256) -> None:
        self.root = Path(root)
        self.image_size = image_size
        if not self.root.is_dir():
            raise DatasetError(
                f"dataset folder {self.root} does not exist; point the data path at an ImageFolder tree (root/<class>/<images>)"
            )
        classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not classes:
            raise DatasetError(f"dataset folder {self.root} has no class folders; expected root/<class>/<images>")
        self.classes = classes
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            files = sorted(p for p in (self.root / name).iterdir() if p.is_file() and p.suffix in IMAGE_EXTENSIONS)
            if not files:
                raise DatasetError(
                    f"class folder {self.root / name} holds no images ({', '.join(IMAGE_EXTENSIONS[:5])}...); "
                    "remove it or add its images, since labels come from the sorted class folders"
                )
            self.samples.extend((f, label) for f in files)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> np.ndarray:
        path, _ = self.samples[index]
        try:
            with Image.open(path) as im:
                im.load()
                image = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"cannot read image {path}: {e}; delete or replace the file and rerun") from None
        return center_crop_arr(image, self.image_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        arr = self.load(index)
        x = torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1.0
        return x, self.samples[index][1]
