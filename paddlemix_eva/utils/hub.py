"""Weights of named models: the PaddleNLP community location that PaddleMIX publishes to, cached locally.

`https://bj.bcebos.com/v1/paddlenlp/models/community/paddlemix/EVA/EVA02/<model>/model_state.pdparams` is
downloaded once into `<cache>/paddlemix/EVA/EVA02/<model>/` (the same layout PaddleMIX uses under
`~/.paddlenlp/models`, so files already downloaded by PaddleMIX are reused). Downloads go to a temporary
file that replaces the final name only when complete and readable.
"""
from __future__ import annotations

import http.client
import logging
import os
import sys
import urllib.error
import urllib.request
from typing import Callable, Optional

from paddlemix_eva.utils.checkpoint import atomic_path

logger = logging.getLogger(__name__)

#: Base URL of the community model store; override to use a mirror.
HUB_URL_ENV = "PADDLEMIX_EVA_HUB_URL"
DEFAULT_HUB_URL = "https://bj.bcebos.com/v1/paddlenlp/models/community"
#: Cache root; default is PaddleNLP's model home (`$PPNLP_HOME/models`, i.e. `~/.paddlenlp/models`).
CACHE_ENV = "PADDLEMIX_EVA_CACHE"
WEIGHTS_NAME = "model_state.pdparams"
_CHUNK = 1 << 20


class DownloadError(OSError):
    """A named model's weights could not be fetched; says from where and where to put them by hand."""


def hub_url() -> str:
    return os.environ.get(HUB_URL_ENV, DEFAULT_HUB_URL).rstrip("/")


def cache_root() -> str:
    root = os.environ.get(CACHE_ENV)
    if root:
        return os.path.expanduser(root)
    from paddlenlp.utils.env import MODEL_HOME

    return MODEL_HOME


def weights_url(full_name: str, filename: str = WEIGHTS_NAME) -> str:
    return f"{hub_url()}/{full_name}/{filename}"


def cached_model_dir(full_name: str) -> str:
    return os.path.join(cache_root(), *full_name.split("/"))


def _progress_bar(total: Optional[int], desc: str):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with paddlenlp
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not sys.stderr.isatty())


def download(url: str, dest: str, validate: Optional[Callable[[str], None]] = None, timeout: float = 60.0) -> str:
    """Fetch `url` to `dest` atomically. A short read, an HTTP error or a file that fails `validate` leaves
    nothing behind under `dest` and raises `DownloadError` naming the URL and where to place the file by hand."""
    manual = f"download {url} yourself and save it as {dest}, or pass a local model directory instead of the name"
    logger.info("downloading %s -> %s", url, dest)
    created = _first_missing_dir(os.path.dirname(os.path.abspath(dest)))
    try:
        return _download(url, dest, validate, timeout, manual)
    except DownloadError:
        if created is not None:  # leave no empty cache folders behind
            _remove_empty_dirs(os.path.dirname(os.path.abspath(dest)), created)
        raise


def _first_missing_dir(directory: str) -> Optional[str]:
    """The outermost folder of `directory` that does not exist yet (None if it all exists)."""
    missing = None
    while not os.path.isdir(directory):
        missing, directory = directory, os.path.dirname(directory)
    return missing


def _remove_empty_dirs(leaf: str, top: str) -> None:
    while os.path.isdir(leaf) and not os.listdir(leaf):
        os.rmdir(leaf)
        if leaf == top:
            break
        leaf = os.path.dirname(leaf)


def _cause(err: BaseException) -> Optional[BaseException]:
    """The urllib error behind a DownloadError: chained only when debugging, so a failed download is one message."""
    return err if logger.isEnabledFor(logging.DEBUG) else None


def _download(url: str, dest: str, validate, timeout: float, manual: str) -> str:
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length is not None else None
                received = 0
                bar = _progress_bar(total, os.path.basename(dest))
                try:
                    with open(tmp, "wb") as out:
                        while True:
                            chunk = response.read(_CHUNK)
                            if not chunk:
                                break
                            out.write(chunk)
                            received += len(chunk)
                            if bar is not None:
                                bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            if total is not None and received != total:
                raise DownloadError(
                    f"download of {url} was interrupted: got {received} of {total} bytes; nothing was cached. "
                    f"Retry, or {manual}"
                )
            if validate is not None:
                try:
                    validate(tmp)
                except Exception as err:
                    raise DownloadError(
                        f"the file downloaded from {url} is corrupt ({err}); nothing was cached. Retry, or {manual}"
                    ) from _cause(err)
    except DownloadError:
        raise
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {url}: HTTP {err.code} {err.reason}. "
                            f"To use it offline, {manual}") from _cause(err)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot download {url} ({reason}). Without network access, {manual}") from _cause(err)
    except http.client.HTTPException as err:  # e.g. IncompleteRead: a chunked response cut off mid-stream
        raise DownloadError(
            f"download of {url} was interrupted ({err!r}); nothing was cached. Retry, or {manual}"
        ) from _cause(err)
    return dest


def fetch_weights(full_name: str, force_download: bool = False) -> str:
    """Local path of the weights of a named model, downloading them into the cache on first use."""
    from paddlemix_eva.utils.checkpoint import read_state_dict

    dest = os.path.join(cached_model_dir(full_name), WEIGHTS_NAME)
    if os.path.isfile(dest) and not force_download:
        return dest
    return download(weights_url(full_name), dest, validate=read_state_dict)
