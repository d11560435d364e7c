"""MiniImagenet with Ravi & Larochelle's (2017) split: 64 / 16 / 20 classes of 600 84x84 RGB images.

The folder holds `train.csv`, `val.csv`, `test.csv` (columns `filename,label`)
and the images, either as Ravi's scripts lay them out (`images/<filename>`) or
packed one archive per split (`images-<split>.tar.gz`, unpacking to
`images/<filename>`). Every JPEG is decoded once into a git-ignored uint8 cache
(one memory-mapped `.npy` per split), so a later load maps the file instead of
decoding 60,000 JPEGs. Pixels become floats in [0, 1] when episodes are drawn,
as in the paper's reference code (no mean subtraction).

There is no official download: the images are ImageNet's, under its terms
(non-commercial research and education), so the project never ships them.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from tqdm.auto import tqdm

DATA_ENV_VAR = "MINIIMAGENET_DIR"
CACHE_ENV_VAR = "MAML_CACHE_DIR"
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
SPLITS = ("train", "val", "test")
N_CLASSES = {"train": 64, "val": 16, "test": 20}
N_IMAGES_PER_CLASS, IMAGE_SIZE = 600, 84
WHERE_TO_GET_IT = ("MiniImagenet has no official download: get Ravi & Larochelle's split files train.csv, "
                   "val.csv and test.csv (github.com/twitter/meta-learning-lstm, data/miniImagenet) and the "
                   "ImageNet images they name, resized to 84x84, as their scripts make them (see data/README.md)")


@dataclass(frozen=True)
class MiniImagenetSplit:
    """One split as (classes, 600, 3, 84, 84) uint8, classes in the order they first appear in the CSV."""

    images: Tensor  # (classes, 600, 3, 84, 84) uint8, memory-mapped from the cache
    class_names: list[str]  # WordNet ids, e.g. "n01532829"
    split: str


def miniimagenet_folder(root: str | Path | None = None) -> Path:
    """The folder to read: `root`, else $MINIIMAGENET_DIR, else data/miniimagenet in the repository."""
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR])
    return REPO_DATA / "miniimagenet"


def _read_csv(path: Path) -> dict[str, list[str]]:
    """label -> its filenames, in file order; checks the header and that each class has 600 images."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
        raise ValueError(f"{path}: expected a header line 'filename,label', got {rows[0] if rows else 'an empty file'}")
    classes: dict[str, list[str]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise ValueError(f"{path}, line {line}: expected 'filename,label', got {row!r}")
        classes.setdefault(row[1], []).append(row[0])
    wrong = {label: len(files) for label, files in classes.items() if len(files) != N_IMAGES_PER_CLASS}
    if wrong:
        raise ValueError(f"{path}: every class must have {N_IMAGES_PER_CLASS} images; these do not: {wrong}")
    return classes


def _image_source(folder: Path, split: str) -> Path:
    """Ravi's `images/` folder if there is one, else the split's archive."""
    archive = folder / f"images-{split}.tar.gz"
    if (folder / "images").is_dir():
        return folder / "images"
    if archive.is_file():
        return archive
    raise FileNotFoundError(f"MiniImagenet images for the {split!r} split not found: looked for an images/ folder "
                            f"and for {archive.name} in {folder.resolve()}")


def _decode(data: bytes, name: str) -> np.ndarray:
    """JPEG bytes -> (3, 84, 84) uint8; anything else is an error naming the file."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            mode, size = image.mode, image.size
            pixels = np.asarray(image)
    except Exception as error:  # PIL raises several types for a file that is not an image
        raise ValueError(f"{name} is not a readable image ({type(error).__name__}: {error})") from error
    if mode != "RGB" or size != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{name} is {size[0]}x{size[1]} {mode}; MiniImagenet images must be "
                         f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB (resize them as Ravi & Larochelle's scripts do)")
    return pixels.transpose(2, 0, 1)


def _decode_split(source: Path, classes: dict[str, list[str]], split: str) -> np.ndarray:
    """Every image of the split, decoded into (classes, 600, 3, 84, 84) uint8 in CSV order."""
    where = {filename: (c, i) for c, files in enumerate(classes.values()) for i, filename in enumerate(files)}
    images = np.empty((len(classes), N_IMAGES_PER_CLASS, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    found = np.zeros((len(classes), N_IMAGES_PER_CLASS), dtype=bool)
    bar = tqdm(total=len(where), desc=f"decoding MiniImagenet {split}", unit="img", mininterval=1)
    if source.is_dir():
        for filename, (c, i) in where.items():
            path = source / filename
            if path.is_file():
                images[c, i], found[c, i] = _decode(path.read_bytes(), str(path)), True
                bar.update()
    else:
        with tarfile.open(source, "r|gz") as archive:  # streamed: one pass over the compressed file
            for member in archive:
                spot = where.get(Path(member.name).name) if member.isfile() else None
                if spot is not None:
                    images[spot], found[spot] = _decode(archive.extractfile(member).read(),
                                                         f"{source}:{member.name}"), True
                    bar.update()
    bar.close()
    if not found.all():
        missing = [files[i] for c, files in enumerate(classes.values()) for i in np.flatnonzero(~found[c])]
        raise FileNotFoundError(f"{len(missing)} image(s) named in {split}.csv are not in {source}, "
                                f"e.g. {missing[0]}")
    return images


def load_miniimagenet(split: str, root: str | Path | None = None, *,
                      cache_dir: str | Path | None = None) -> MiniImagenetSplit:
    """One split, decoded on first use and memory-mapped from the cache afterwards."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = miniimagenet_folder(root)
    csv_path = folder / f"{split}.csv"
    if not csv_path.is_file():
        source = "the root argument" if root is not None else (
            f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else "the default location")
        raise FileNotFoundError(
            f"MiniImagenet not found: no {csv_path.name} in {folder.resolve()} ({source}). Expected {split}.csv "
            f"beside an images/ folder (or images-{split}.tar.gz). {WHERE_TO_GET_IT}; then set {DATA_ENV_VAR} "
            f"to that folder or pass it as the root argument.")
    classes = _read_csv(csv_path)
    if len(classes) != N_CLASSES[split]:
        warnings.warn(f"{csv_path} has {len(classes)} classes; Ravi & Larochelle's {split} split has "
                      f"{N_CLASSES[split]}", stacklevel=2)
    key = hashlib.sha1(csv_path.read_bytes()).hexdigest()[:16]  # the CSV fixes which images, in which order
    cache_dir = Path(cache_dir or os.environ.get(CACHE_ENV_VAR) or REPO_DATA / "cache")
    cache = cache_dir / f"miniimagenet{IMAGE_SIZE}_{split}_{key}.npy"
    if not cache.is_file():
        images = _decode_split(_image_source(folder, split), classes, split)
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.stem}.{os.getpid()}.part.npy")  # one per process: two first uses at once must not share it
        np.save(partial, images)
        partial.replace(cache)
    mapped = np.load(cache, mmap_mode="r")
    with warnings.catch_warnings():  # read-only by design: episodes copy the images they draw
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        images = torch.from_numpy(mapped)
    return MiniImagenetSplit(images, list(classes), split)
