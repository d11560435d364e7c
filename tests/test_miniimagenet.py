"""MiniImagenet: the real splits from ../shared, the cache, episodes, and clear errors for bad input."""
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from helpers import miniimagenet
from helpers.episodes import sample_episodes

SHARED = Path(os.environ.get("MINIIMAGENET_DIR")
              or Path(__file__).resolve().parents[2] / "shared" / "data" / "miniimagenet")
needs_data = pytest.mark.skipif(not (SHARED / "test.csv").is_file(),
                                reason=f"MiniImagenet not found in {SHARED} (set MINIIMAGENET_DIR)")


@needs_data
@pytest.mark.parametrize("split, n_classes", [("train", 64), ("val", 16), ("test", 20)])
def test_every_csv_row_of_the_real_split_is_an_84x84_rgb_image(split, n_classes, tmp_path):
    """Decoded afresh (not from the project's cache): a missing or malformed image would raise."""
    data = miniimagenet.load_miniimagenet(split, SHARED, cache_dir=tmp_path)
    assert data.images.shape == (n_classes, 600, 3, 84, 84) and data.images.dtype == torch.uint8
    rows = (SHARED / f"{split}.csv").read_text().splitlines()[1:]
    assert len(rows) == n_classes * 600
    assert data.class_names == list(dict.fromkeys(row.split(",")[1] for row in rows))  # CSV order
    first = rows[0].split(",")[0]  # the first row's image is images[0, 0], pixel for pixel
    with tarfile.open(SHARED / f"images-{split}.tar.gz") as archive:
        expected = np.asarray(PIL.Image.open(archive.extractfile(f"images/{first}"))).transpose(2, 0, 1)
    assert np.array_equal(data.images[0, 0].numpy(), expected)
    assert 40 < data.images[:, :5].float().mean() < 200  # real photographs, not blank


@needs_data
def test_second_load_maps_the_cache_without_decoding(tmp_path, monkeypatch):
    first = miniimagenet.load_miniimagenet("val", SHARED, cache_dir=tmp_path)

    def no_decoding(*args):
        raise AssertionError("decoded again although a cache exists")
    monkeypatch.setattr(miniimagenet, "_decode_split", no_decoding)
    again = miniimagenet.load_miniimagenet("val", SHARED, cache_dir=tmp_path)
    assert torch.equal(again.images[3, 7], first.images[3, 7])


@needs_data
def test_episodes_are_colour_unrotated_and_seeded():
    images = miniimagenet.load_miniimagenet("test", SHARED).images
    tasks = sample_episodes(images, 2, 5, 1, 15, generator=torch.Generator().manual_seed(0), rotate=False)
    assert tasks.x_support.shape == (2, 5, 3, 84, 84) and tasks.x_query.shape == (2, 75, 3, 84, 84)
    assert tasks.x_query.dtype == torch.float32 and 0 <= tasks.x_query.min() and tasks.x_query.max() <= 1
    assert (tasks.rotations == 0).all()
    chosen = images[tasks.classes[0, 2]].float() / 255  # class 2's support image is one of its photographs
    assert any(torch.equal(tasks.x_support[0, 2], photo) for photo in chosen)
    again = sample_episodes(images, 2, 5, 1, 15, generator=torch.Generator().manual_seed(0), rotate=False)
    assert torch.equal(tasks.x_query, again.x_query)


# ---- bad input, on small fake data sets written here --------------------------------------------------

def jpeg(size=(84, 84), mode="RGB", seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def fake_split(folder: Path, split="test", n_classes=2, layout="archive", odd=None, skip=None):
    """A split of `n_classes` x 600 images; `odd` names a file given other bytes, `skip` one left out."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"n{c:08d}{i:08d}.jpg" for c in range(n_classes) for i in range(600)]
    rows = ["filename,label"] + [f"{name},n{int(name[1:9]):08d}" for name in names]
    (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    good = jpeg()
    files = {name: (odd[1] if odd and name == odd[0] else good) for name in names if name != skip}
    if layout == "folder":
        (folder / "images").mkdir(exist_ok=True)
        for name, data in files.items():
            (folder / "images" / name).write_bytes(data)
    else:
        with tarfile.open(folder / f"images-{split}.tar.gz", "w:gz") as archive:
            for name, data in files.items():
                info = tarfile.TarInfo(f"images/{name}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return names


@pytest.mark.parametrize("layout", ["archive", "folder"])
def test_both_layouts_load(tmp_path, layout):
    fake_split(tmp_path / "mini", layout=layout)
    with pytest.warns(UserWarning, match="has 2 classes; Ravi & Larochelle's test split has 20"):
        data = miniimagenet.load_miniimagenet("test", tmp_path / "mini", cache_dir=tmp_path / "cache")
    assert data.images.shape == (2, 600, 3, 84, 84) and data.class_names == ["n00000000", "n00000001"]


TWO_AT_ONCE = """
import sys, time
from pathlib import Path
import numpy as np
from helpers import miniimagenet
cache = Path(sys.argv[2])
save = np.save
def save_then_wait(path, array):  # both processes hold a written partial file before either renames it
    save(path, array)
    (cache / f"saved.{sys.argv[3]}").touch()
    deadline = time.monotonic() + 60
    while len(list(cache.glob("saved.*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
np.save = save_then_wait
print(miniimagenet.load_miniimagenet("test", sys.argv[1], cache_dir=cache).images.shape)
"""


def test_two_processes_may_decode_the_same_split_at_once(tmp_path):
    """Training legs started side by side all decode on first use; none may lose the cache file to another."""
    fake_split(tmp_path / "mini")
    (tmp_path / "cache").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PYTHONWARNINGS": "ignore"}
    runs = [subprocess.Popen([sys.executable, "-c", TWO_AT_ONCE, str(tmp_path / "mini"), str(tmp_path / "cache"),
                              str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-500:] for _, err in outputs]
    assert all("torch.Size([2, 600, 3, 84, 84])" in out for out, _ in outputs)
    assert [p.name for p in (tmp_path / "cache").glob("*.npy")] == [f"miniimagenet84_test_{_csv_key(tmp_path)}.npy"]


def _csv_key(tmp_path: Path) -> str:
    return hashlib.sha1((tmp_path / "mini" / "test.csv").read_bytes()).hexdigest()[:16]


def test_missing_folder_says_where_it_looked_what_it_expected_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIIMAGENET_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        miniimagenet.load_miniimagenet("train", tmp_path / "nowhere")
    message = str(error.value)
    assert str((tmp_path / "nowhere").resolve()) in message and "train.csv" in message
    assert "images/" in message and "images-train.tar.gz" in message and "MINIIMAGENET_DIR" in message
    assert "Ravi & Larochelle" in message


@pytest.mark.filterwarnings("ignore:.*classes; Ravi")
def test_missing_archive_is_named(tmp_path):
    fake_split(tmp_path)
    (tmp_path / "images-test.tar.gz").unlink()
    with pytest.raises(FileNotFoundError, match="images-test.tar.gz"):
        miniimagenet.load_miniimagenet("test", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.filterwarnings("ignore:.*classes; Ravi")
def test_csv_row_without_its_image_is_named(tmp_path):
    names = fake_split(tmp_path, skip="n0000000100000042.jpg")
    assert "n0000000100000042.jpg" in names
    with pytest.raises(FileNotFoundError, match=r"1 image\(s\) named in test.csv .* n0000000100000042.jpg"):
        miniimagenet.load_miniimagenet("test", tmp_path, cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.npy"))  # nothing half-made is cached


@pytest.mark.filterwarnings("ignore:.*classes; Ravi")
@pytest.mark.parametrize("size, mode, says", [((64, 84), "RGB", "64x84 RGB"), ((84, 84), "L", "84x84 L")])
def test_image_that_is_not_84x84_rgb_is_named(tmp_path, size, mode, says):
    fake_split(tmp_path, odd=("n0000000000000007.jpg", jpeg(size, mode)))
    with pytest.raises(ValueError, match=f"n0000000000000007.jpg is {says}; MiniImagenet images must be 84x84 RGB"):
        miniimagenet.load_miniimagenet("test", tmp_path, cache_dir=tmp_path / "cache")


def test_class_without_600_images_is_named(tmp_path):
    fake_split(tmp_path)
    csv = tmp_path / "test.csv"
    csv.write_text("".join(csv.read_text().splitlines(keepends=True)[:-3]))
    with pytest.raises(ValueError, match=r"test.csv: every class must have 600 images; .*'n00000001': 597"):
        miniimagenet.load_miniimagenet("test", tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_way=21, k_shot=1, n_query=15), "n_way=21 is larger than the 20 classes in this split"),
    (dict(n_way=5, k_shot=590, n_query=15), "k_shot \\+ n_query = 590 \\+ 15 is more than the 600 examples"),
])
def test_bad_episode_requests(kwargs, message):
    images = torch.zeros(20, 600, 3, 2, 2, dtype=torch.uint8)  # the shape of the test split, tiny images
    with pytest.raises(ValueError, match=message):
        sample_episodes(images, 1, generator=torch.Generator(), rotate=False, **kwargs)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split must be one of"):
        miniimagenet.load_miniimagenet("validation")
