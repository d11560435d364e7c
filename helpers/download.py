"""Fetch a file over HTTP(S) with an integrity check; never leave a half-written file behind."""
from __future__ import annotations

import hashlib
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm


class DownloadError(OSError):
    """A source that could not be reached; the message says what was fetched, why it failed and what to do."""


def _cause(error: BaseException) -> str:
    """The one line that says why: "HTTP 404 Not Found", "[Errno -2] Name or service not known", "timed out"."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: str | Path, *, md5: str, timeout_s: float = 60.0,
                  progress: bool = True, instead: str | None = None) -> Path:
    """Download `url` to `destination`, verify its MD5, then move it into place.

    The bytes go to a temporary file beside the destination; only a file whose
    checksum matches is renamed into place, so an interrupted or corrupted
    download leaves nothing that a later run could mistake for the real thing.
    A source that cannot be reached raises one `DownloadError` (no chained
    urllib traceback) naming the URL and the cause, followed by `instead`: what
    the user can do without the network (default: put the file there by hand).
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
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        advice = instead or f"Put the file there by hand: {destination.resolve()}"
        raise DownloadError(f"Could not download {url} ({_cause(error)}). {advice}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
