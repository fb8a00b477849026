"""ImageFolder checks, a folder dataset that stops on unreadable images, and the seeded viewpoint
perturbation (random perspective warp, black fill)."""
import hashlib
import os
from typing import List, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps
from timm.data import ImageDataset
from torch.utils.data import Dataset

from threedtrl.runtime import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff")

# The paper shows IN-1K-perturbed samples but not how they were made. Here each image gets a
# random perspective warp: every corner moves inwards by up to DISTORTION * half the side, in x
# and y independently (like torchvision's RandomPerspective at its default 0.5), which turns
# the frame into a keystone-like quadrilateral; the uncovered area is black.
PERTURB_DISTORTION = 0.5
PERTURB_SEED = 0


def class_folders(split_dir: str) -> List[str]:
    """Sorted names of the class folders in ``split_dir``; each must hold at least one image."""
    if not os.path.isdir(split_dir):
        raise UserError(f"folder not found: {split_dir}")
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise UserError(f"no class folders in {split_dir}")
    for name in names:
        if not any(_is_image(f) for _, _, files in os.walk(os.path.join(split_dir, name)) for f in files):
            raise UserError(f"class folder {os.path.join(split_dir, name)} holds no images")
    return names


def _is_image(filename: str) -> bool:
    return filename.lower().endswith(IMAGE_EXTENSIONS) and not filename.startswith(".")


# The folder names timm 0.6 (the release's timm) tries for a split whose own folder is missing.
_SPLIT_SYNONYMS = (("train", "training"), ("val", "valid", "validation", "eval", "evaluation"))


def split_folder(root: str, split: str) -> str:
    """The folder of ``split`` in ``root``: ``root/split`` if it exists, else the first existing
    synonym (``validation`` finds ``val/``, as timm 0.6's search does), else ``root/split``."""
    folder = os.path.join(root, split)
    if os.path.isdir(folder):
        return folder
    for synonyms in _SPLIT_SYNONYMS:
        if split in synonyms:
            for name in synonyms:
                if os.path.isdir(os.path.join(root, name)):
                    return os.path.join(root, name)
    return folder


def check_image_folder(root: str, train_split: str = "train", val_split: str = "val") -> List[str]:
    """Check an ImageNet-style root (``train/<class>/*``, ``val/<class>/*``; split folders found as
    :func:`split_folder` does); return the class names."""
    if not os.path.isdir(root):
        raise UserError(f"data folder not found: {root}")
    train = class_folders(split_folder(root, train_split))
    val = class_folders(split_folder(root, val_split))
    if train != val:
        only_train = sorted(set(train) - set(val))
        only_val = sorted(set(val) - set(train))
        raise UserError(f"class folders differ between {train_split}/ and {val_split}/ in {root}: "
                        f"only in {train_split}: {_short(only_train)}; only in {val_split}: {_short(only_val)}")
    return train


def eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer) greyscale image scaled to 8 bits; other images unchanged.
    PIL's own conversion clips such images at 255, which turns nearly every pixel white."""
    if not img.mode.startswith("I"):
        return img
    levels = np.asarray(img, dtype=np.float64) / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(levels), 0, 255).astype(np.uint8), "L")


class StrictImageFolder(ImageDataset):
    """timm's ImageFolder dataset (``root/<class>/<image>``, the same classes, order and transforms),
    except that an unreadable image stops the run with an error naming the file, where timm logs it
    and silently returns the next image in its place.

    Items are ``(transformed image, class index)``.
    """

    def __init__(self, root: str):
        super().__init__(root, reader="", input_img_mode="RGB")

    def __getitem__(self, index: int) -> Tuple[object, int]:
        source, target = self.reader[index][:2]
        try:
            img = eight_bit(Image.open(source)).convert(self.input_img_mode)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise UserError(f"cannot decode image {self.reader.filename(index, absolute=True)}: "
                            f"{type(err).__name__}") from None
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target


def _short(names: Sequence[str], limit: int = 5) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def perturb_rng(seed: int, index: int) -> np.random.Generator:
    """A generator fixed by (seed, image index), independent of loader workers and batch order."""
    digest = hashlib.sha256(f"perturb/{seed}/{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def perspective_corners(width: int, height: int, rng: np.random.Generator,
                        distortion: float = PERTURB_DISTORTION) -> np.ndarray:
    """Where the corners (top-left, top-right, bottom-right, bottom-left) go: ``(4, 2)`` float32."""
    dx = rng.uniform(0, distortion * width / 2, 4)
    dy = rng.uniform(0, distortion * height / 2, 4)
    right, bottom = width - 1, height - 1
    return np.array([[dx[0], dy[0]], [right - dx[1], dy[1]],
                     [right - dx[2], bottom - dy[2]], [dx[3], bottom - dy[3]]], dtype=np.float32)


def perspective_warp(image: Image.Image, rng: np.random.Generator,
                     distortion: float = PERTURB_DISTORTION) -> Image.Image:
    """Warp ``image`` with a random perspective; same size and mode, black outside the warped frame."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    source = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, perspective_corners(width, height, rng, distortion))
    warped = cv2.warpPerspective(rgb, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return Image.fromarray(warped)


class PerturbedImages(Dataset):
    """A timm image dataset whose images are perspective-warped (seeded per index) before ``transform``.

    timm's ``create_loader`` sets ``transform``, exactly as for the plain dataset.
    """

    def __init__(self, base: Dataset, seed: int = PERTURB_SEED, distortion: float = PERTURB_DISTORTION):
        self.base = base
        self.base.transform = None
        self.seed = seed
        self.distortion = distortion
        self.transform = None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> Tuple[object, int]:
        image, target = self.base[index]
        image = perspective_warp(image, perturb_rng(self.seed, index), self.distortion)
        return (self.transform(image) if self.transform is not None else image), target


def _posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, also for 0 bits (a black image), which recent Pillow refuses."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def patch_randaugment_posterize() -> None:
    """RandAugment with ``inc1`` at magnitude >= 10 asks for 0-bit posterize; make it work with Pillow >= 11."""
    from timm.data import auto_augment
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize
