"""Omniglot from the real archives: paper split, cache, episodes, and the download path against a local server."""
import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
import torch

from helpers import omniglot
from helpers.download import DownloadError
from helpers.episodes import sample_episodes

SHARED = Path(os.environ.get("OMNIGLOT_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot")
needs_data = pytest.mark.skipif(not (SHARED / "images_background.zip").is_file(),
                                reason=f"Omniglot archives not found in {SHARED} (set OMNIGLOT_DIR)")


@pytest.fixture(scope="module")
def dataset():
    return omniglot.load_omniglot(SHARED)


@needs_data
def test_paper_split_and_preprocessing(dataset):
    assert dataset.images.shape == (1623, 20, 28, 28) and dataset.images.dtype == torch.uint8
    sizes = {name: len(indices) for name, indices in dataset.splits.items()}
    assert sizes == {"train": 1100, "val": 100, "test": 423}
    every = torch.cat(list(dataset.splits.values()))
    assert len(set(every.tolist())) == 1623  # disjoint and complete
    assert dataset.images.float().mean() < 64  # strokes bright on a dark background
    assert torch.equal(omniglot._paper_split()["test"], dataset.splits["test"])  # fixed seed


@needs_data
def test_second_load_comes_from_the_cache(dataset, monkeypatch):
    def no_preprocessing(folder):
        raise AssertionError("preprocessed again although a cache exists")
    monkeypatch.setattr(omniglot, "_preprocess", no_preprocessing)
    again = omniglot.load_omniglot(SHARED)
    assert torch.equal(again.images, dataset.images)


def test_missing_data_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("OMNIGLOT_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as error:
        omniglot.load_omniglot(tmp_path)
    message = str(error.value)
    assert str(tmp_path.resolve()) in message and "images_background.zip" in message
    assert "download=True" in message and "OMNIGLOT_DIR" in message


@needs_data
def test_episodes_shapes_labels_and_seed(dataset):
    images = dataset.split_images("train")
    make = functools.partial(sample_episodes, images, 4, 5, 1, 15)
    tasks = make(generator=torch.Generator().manual_seed(0))
    assert tasks.x_support.shape == (4, 5, 1, 28, 28) and tasks.x_query.shape == (4, 75, 1, 28, 28)
    assert tasks.y_support.tolist()[0] == [0, 1, 2, 3, 4]
    assert (tasks.y_query[0] == torch.arange(5).repeat_interleave(15)).all()
    assert tasks.x_support.min() >= 0 and tasks.x_support.max() <= 1
    assert all(len(set(row.tolist())) == 5 for row in tasks.classes)  # N distinct classes per task
    again = make(generator=torch.Generator().manual_seed(0))
    assert torch.equal(tasks.x_query, again.x_query)
    # the support image of class 0 is a rotated drawing of the character the task picked
    character = images[tasks.classes[0, 0]]
    turned = torch.rot90(character.float() / 255, int(tasks.rotations[0, 0]), dims=(-2, -1))
    assert any(torch.equal(tasks.x_support[0, 0, 0], drawing) for drawing in turned)


@needs_data
@pytest.mark.parametrize("kwargs, message", [
    (dict(n_way=424, k_shot=1, n_query=1), "n_way=424 is larger than the 423 classes"),
    (dict(n_way=5, k_shot=10, n_query=11), "10 \\+ 11 is more than the 20 examples"),
    (dict(n_way=5, k_shot=0, n_query=1), "k_shot must be an integer >= 1"),
])
def test_bad_episode_requests(dataset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_episodes(dataset.split_images("test"), 2, generator=torch.Generator(), **kwargs)


@pytest.fixture
def archive_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a good copy of the archives and a corrupted one."""
    served = tmp_path / "served"
    (served / "good").mkdir(parents=True)
    (served / "corrupted").mkdir()
    for name in omniglot.ARCHIVES:
        data = (SHARED / name).read_bytes()
        (served / "good" / name).write_bytes(data)
        (served / "corrupted" / name).write_bytes(data[: len(data) // 2] + b"\0" * 1000)
    handler = functools.partial(QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@needs_data
def test_download_checks_the_archives(archive_server, tmp_path):
    checksums = {name: md5_of(SHARED / name) for name in omniglot.ARCHIVES}
    folder = omniglot.download_omniglot(tmp_path / "fetched", base_url=f"{archive_server}/good", md5=checksums)
    assert sorted(p.name for p in folder.iterdir()) == sorted(omniglot.ARCHIVES)
    assert all(md5_of(folder / name) == checksums[name] for name in omniglot.ARCHIVES)


@needs_data
def test_corrupted_download_fails_clearly_and_leaves_nothing(archive_server, tmp_path):
    checksums = {name: md5_of(SHARED / name) for name in omniglot.ARCHIVES}
    target = tmp_path / "fetched"
    with pytest.raises(OSError, match=r"images_background.zip is corrupted: MD5 [0-9a-f]{32}, expected"):
        omniglot.download_omniglot(target, base_url=f"{archive_server}/corrupted", md5=checksums)
    assert list(target.iterdir()) == []  # neither the archive nor a .part file


def closed_port() -> int:
    """A port on 127.0.0.1 that nobody listens on: the OS hands it out, and we close it again at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_server_raises_one_error_that_says_what_to_do(tmp_path, monkeypatch):
    """Offline, the user gets one message: what was fetched, why it failed, where to put it, how to point elsewhere."""
    monkeypatch.delenv("OMNIGLOT_DIR", raising=False)
    base_url = f"http://127.0.0.1:{closed_port()}/omniglot"
    target = tmp_path / "fetched"
    with pytest.raises(DownloadError) as error:
        omniglot.download_omniglot(target, base_url=base_url, timeout_s=5)
    message = str(error.value)
    assert f"{base_url}/images_background.zip" in message  # the URL
    assert "Connection refused" in message  # the cause
    assert str(target.resolve()) in message and "images_evaluation.zip" in message  # where the archives go
    assert "OMNIGLOT_DIR" in message  # how to point elsewhere
    assert error.value.__cause__ is None and error.value.__suppress_context__  # no urllib traceback chained on
    assert list(target.iterdir()) == []  # and no .part file left behind


def test_load_omniglot_offline_says_the_same(tmp_path, monkeypatch):
    """What notebook 03's set-up cell calls: load_omniglot(download=True) passes the one clear error through."""
    monkeypatch.setenv("OMNIGLOT_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(omniglot, "OFFICIAL_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(DownloadError, match=r"Could not download http://127\.0\.0\.1:\d+/images_background\.zip "
                                            r"\(.*Connection refused\)\. .* set OMNIGLOT_DIR"):
        omniglot.load_omniglot(download=True)


def test_printed_commands_name_the_users_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("OMNIGLOT_DIR", raising=False)
    assert omniglot.data_dir_prefix() == ""  # the default data/omniglot needs nothing in front
    monkeypatch.setenv("OMNIGLOT_DIR", str(tmp_path / "my data"))
    assert omniglot.data_dir_prefix() == f"OMNIGLOT_DIR='{(tmp_path / 'my data').resolve()}' "
