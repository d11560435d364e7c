"""Omniglot (Lake et al. 2015) as the MAML paper uses it: 1,623 characters at 28x28, split by a fixed seed.

Reads the official archives `images_background.zip` and `images_evaluation.zip`
(layout `images_background/<Alphabet>/characterNN/XXXX_YY.png`, 105x105) from a
folder, or downloads them from the official repository with an MD5 check. The
preprocessed array is cached (git-ignored) so later loads take well under a second.
"""
from __future__ import annotations

import hashlib
import io
import os
import random
import shlex
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .download import download_file

OFFICIAL_URL = "https://github.com/brendenlake/omniglot/raw/master/python"
OFFICIAL_MD5 = {"images_background.zip": "68d2efa1b9178cc56df9314c21c6e718",
                "images_evaluation.zip": "6b91aef0f799c5bb55b94e3f2daec811"}
ARCHIVES = tuple(OFFICIAL_MD5)
DATA_ENV_VAR = "OMNIGLOT_DIR"
CACHE_ENV_VAR = "MAML_CACHE_DIR"
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
N_CHARACTERS, N_DRAWINGS, IMAGE_SIZE = 1623, 20, 28
SPLIT_SEED, N_META_TRAIN, N_META_VAL = 1, 1100, 100  # 1,200 for meta-training (1,100 + 100 validation), 423 test


@dataclass(frozen=True)
class Omniglot:
    """All characters as uint8 images (strokes bright), and the paper's character split."""

    images: Tensor  # (1623, 20, 28, 28) uint8
    character_names: list[str]  # "Alphabet/characterNN", same order as images
    splits: dict[str, Tensor]  # "train" (1,100), "val" (100), "test" (423): indices into images

    def split_images(self, split: str) -> Tensor:
        if split not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {split!r}")
        return self.images[self.splits[split]]


def omniglot_folder(root: str | Path | None = None) -> Path:
    """The folder to read: `root`, else $OMNIGLOT_DIR, else data/omniglot in the repository."""
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR])
    return REPO_DATA / "omniglot"


def data_dir_prefix() -> str:
    """`OMNIGLOT_DIR=<this user's folder> ` to put before a command printed for the user, or "" for the default.

    A printed resume command must work when pasted on the user's machine, so it names the folder this
    process actually reads (from $OMNIGLOT_DIR), never a layout that only CI has.
    """
    if os.environ.get(DATA_ENV_VAR):
        return f"{DATA_ENV_VAR}={shlex.quote(str(Path(os.environ[DATA_ENV_VAR]).resolve()))} "
    return ""


def download_omniglot(folder: str | Path, *, base_url: str | None = None,
                      md5: dict[str, str] = OFFICIAL_MD5, timeout_s: float = 60.0) -> Path:
    """Fetch both archives into `folder` (skipping any already there), each checked against its MD5.

    Offline, this raises one `DownloadError` that says where the archives are expected and how to point
    elsewhere, since that is all a user without the network can act on.
    """
    folder, base_url = Path(folder), base_url or OFFICIAL_URL
    instead = (f"Omniglot's archives ({' and '.join(ARCHIVES)}, about 15 MB together) are expected in "
               f"{folder.resolve()}: copy them there from {OFFICIAL_URL}, or set {DATA_ENV_VAR} to a folder "
               f"that holds them (e.g. {DATA_ENV_VAR}=/path/to/omniglot make test).")
    for name in ARCHIVES:
        if not (folder / name).is_file():
            download_file(f"{base_url}/{name}", folder / name, md5=md5[name], timeout_s=timeout_s, instead=instead)
    return folder


def _find_archives(root: str | Path | None, download: bool) -> Path:
    folder = omniglot_folder(root)
    missing = [name for name in ARCHIVES if not (folder / name).is_file()]
    if missing and download:
        return download_omniglot(folder)
    if missing:
        source = "the root argument" if root is not None else (
            f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else "the default location")
        raise FileNotFoundError(
            f"Omniglot not found: looked for {', '.join(missing)} in {folder.resolve()} ({source}). "
            f"Pass download=True to fetch them from {OFFICIAL_URL}, put the official archives there by hand, "
            f"or set {DATA_ENV_VAR} to a folder that holds them.")
    return folder


def _archive_key(folder: Path) -> str:
    """Identifies the archives' bytes, so a cache made from other archives is never reused."""
    digest = hashlib.sha1()
    for name in ARCHIVES:
        digest.update(name.encode())
        digest.update(hashlib.md5((folder / name).read_bytes()).digest())
    return digest.hexdigest()[:16]


def _preprocess(folder: Path) -> tuple[np.ndarray, list[str]]:
    """Decode every PNG, resize 105x105 -> 28x28 (Lanczos), invert so strokes are bright."""
    drawings: dict[str, list[tuple[str, np.ndarray]]] = {}
    for name in ARCHIVES:
        with zipfile.ZipFile(folder / name) as archive:
            for member in tqdm(archive.namelist(), desc=f"preprocessing {name}", unit="img", mininterval=1):
                parts = member.split("/")
                if len(parts) != 4 or not parts[3].endswith(".png"):
                    continue
                with PIL.Image.open(io.BytesIO(archive.read(member))) as image:
                    small = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), PIL.Image.LANCZOS)
                drawings.setdefault(f"{parts[1]}/{parts[2]}", []).append((parts[3], 255 - np.asarray(small)))
    names = sorted(drawings)
    if len(names) != N_CHARACTERS or any(len(drawings[n]) != N_DRAWINGS for n in names):
        raise ValueError(f"{folder} does not hold the official Omniglot archives: found {len(names)} characters "
                         f"(expected {N_CHARACTERS}, each with {N_DRAWINGS} drawings)")
    images = np.stack([np.stack([pixels for _, pixels in sorted(drawings[n])]) for n in names])
    return images.astype(np.uint8), names


def _paper_split() -> dict[str, Tensor]:
    order = list(range(N_CHARACTERS))
    random.Random(SPLIT_SEED).shuffle(order)
    train, val = order[:N_META_TRAIN], order[N_META_TRAIN:N_META_TRAIN + N_META_VAL]
    test = order[N_META_TRAIN + N_META_VAL:]
    return {name: torch.tensor(indices) for name, indices in (("train", train), ("val", val), ("test", test))}


def load_omniglot(root: str | Path | None = None, *, download: bool = False,
                  cache_dir: str | Path | None = None) -> Omniglot:
    """Load (and on first use preprocess and cache) Omniglot at 28x28 with the paper's split."""
    folder = _find_archives(root, download)
    cache_dir = Path(cache_dir or os.environ.get(CACHE_ENV_VAR) or REPO_DATA / "cache")
    cache = cache_dir / f"omniglot{IMAGE_SIZE}_{_archive_key(folder)}.npz"
    if cache.is_file():
        with np.load(cache) as saved:
            images, names = saved["images"], saved["names"].tolist()
    else:
        images, names = _preprocess(folder)
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.stem}.{os.getpid()}.part.npz")  # one per process: two first uses at once must not share it
        np.savez(partial, images=images, names=np.array(names))
        partial.replace(cache)
    return Omniglot(torch.from_numpy(images), names, _paper_split())
