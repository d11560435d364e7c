"""Fetch a file over HTTP(S) with an integrity check; never leave a half-written file behind."""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm


def file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: str | Path, *, md5: str, timeout_s: float = 60.0,
                  progress: bool = True) -> Path:
    """Download `url` to `destination`, verify its MD5, then move it into place.

    The bytes go to a temporary file beside the destination; only a file whose
    checksum matches is renamed into place, so an interrupted or corrupted
    download leaves nothing that a later run could mistake for the real thing.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = file_md5(partial)
        if actual != md5:
            raise OSError(f"download of {url} is corrupted: MD5 {actual}, expected {md5}; "
                          f"nothing was saved, try again (or fetch the file by hand into {destination.parent})")
        partial.replace(destination)
        return destination
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
