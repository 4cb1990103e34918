"""Named models fetched from a local stand-in of the community store (`PADDLEMIX_EVA_HUB_URL`).

A `ThreadingHTTPServer` on 127.0.0.1 serves a directory laid out like the store; its behaviour per request
(serve, cut the body short, send garbage) is switched per test, and every request is counted so cache hits
can be told apart from downloads.
"""
from __future__ import annotations

import http.server
import logging
import os
import socket
import threading
import urllib.parse
from typing import Dict, List

import numpy as np
import pytest

from paddlemix_eva import zoo
from paddlemix_eva.models import EVA02VisionTransformer
from paddlemix_eva.utils import hub
from paddlemix_eva.utils.checkpoint import read_state_dict, save_paddle_state_dict

NAME = "eva02_Ti_pt_in21k_ft_in1k_p14"
FULL_NAME = "paddlemix/EVA/EVA02/" + NAME


class _Store:
    """What the fake store does with the next requests, and which paths it was asked for."""

    def __init__(self, root: str):
        self.root = root
        self.mode = "serve"  # serve | truncate | garbage | chunked-truncate
        self.requests: List[str] = []


def _make_handler(store: _Store):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            store.requests.append(self.path)
            rel = urllib.parse.unquote(urllib.parse.urlparse(self.path).path).lstrip("/")
            path = os.path.join(store.root, *rel.split("/"))
            if not os.path.isfile(path):
                self.send_error(404, "Not Found")
                return
            with open(path, "rb") as f:
                data = f.read()
            if store.mode == "chunked-truncate":
                self._chunked_then_hang_up(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if store.mode == "truncate":
                # announce the whole file, deliver a third, hang up
                self.wfile.write(data[: len(data) // 3])
                self.wfile.flush()
                self.close_connection = True
            elif store.mode == "garbage":
                self.wfile.write(np.random.default_rng(1).bytes(len(data)))
            else:
                self.wfile.write(data)

        def _chunked_then_hang_up(self, data: bytes) -> None:
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            part = data[: len(data) // 3]
            self.wfile.write(b"%x\r\n" % len(part) + part + b"\r\n")
            self.wfile.write(b"%x\r\n" % len(data) + data[:100])  # a chunk that never completes
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, format, *args) -> None:  # noqa: A002 - keep test output quiet
            pass

    return Handler


@pytest.fixture(scope="module")
def store_root(tmp_path_factory) -> str:
    """The store's copy of the Ti classifier: random weights written where the community store keeps them."""
    root = tmp_path_factory.mktemp("store")
    model = zoo.get_model(NAME)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    save_paddle_state_dict(state, os.path.join(root, *FULL_NAME.split("/"), hub.WEIGHTS_NAME))
    return str(root)


@pytest.fixture(scope="module")
def served_weights(store_root) -> Dict[str, np.ndarray]:
    """What the store serves, read back independently of the code under test's loader."""
    import paddle

    path = os.path.join(store_root, *FULL_NAME.split("/"), hub.WEIGHTS_NAME)
    return {k: v.numpy() for k, v in paddle.load(path).items()}


@pytest.fixture
def store(store_root, monkeypatch):
    store = _Store(store_root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(store))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(hub.HUB_URL_ENV, f"http://127.0.0.1:{server.server_port}")
    try:
        yield store
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _cache() -> str:
    return os.environ[hub.CACHE_ENV]


def _cached_weights() -> str:
    return os.path.join(_cache(), *FULL_NAME.split("/"), hub.WEIGHTS_NAME)


def _files_under(directory: str) -> List[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(directory) for f in files)


def _assert_state_equal(model, expected: Dict[str, np.ndarray]) -> None:
    state = model.state_dict()
    assert sorted(state) == sorted(expected)
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=key)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------- success
def test_from_pretrained_by_name_downloads_then_uses_cache(store, served_weights):
    model = EVA02VisionTransformer.from_pretrained(NAME)
    _assert_state_equal(model, served_weights)
    assert store.requests == [f"/{FULL_NAME}/{hub.WEIGHTS_NAME}"]
    assert _files_under(_cache()) == [_cached_weights()]
    assert model.config.image_size == 336 and model.config.num_classes == 1000

    again = EVA02VisionTransformer.from_pretrained(FULL_NAME)  # full name resolves to the same cache entry
    _assert_state_equal(again, served_weights)
    assert len(store.requests) == 1, "the second load must come from the cache"


def test_force_download_fetches_again(store, served_weights):
    EVA02VisionTransformer.from_pretrained(NAME)
    EVA02VisionTransformer.from_pretrained(NAME, force_download=True)
    assert len(store.requests) == 2
    assert _files_under(_cache()) == [_cached_weights()]


def test_get_model_pretrained(store, served_weights):
    model = zoo.get_model(NAME, pretrained=True)
    assert isinstance(model, EVA02VisionTransformer)
    _assert_state_equal(model, served_weights)
    assert len(store.requests) == 1


def test_cached_weights_are_used_without_a_server(store, served_weights, monkeypatch):
    EVA02VisionTransformer.from_pretrained(NAME)
    monkeypatch.setenv(hub.HUB_URL_ENV, f"http://127.0.0.1:{_closed_port()}")
    _assert_state_equal(EVA02VisionTransformer.from_pretrained(NAME), served_weights)


def test_failed_download_can_be_retried(store, served_weights):
    store.mode = "truncate"
    with pytest.raises(hub.DownloadError):
        EVA02VisionTransformer.from_pretrained(NAME)
    store.mode = "serve"
    _assert_state_equal(EVA02VisionTransformer.from_pretrained(NAME), served_weights)
    assert len(store.requests) == 2


# ------------------------------------------------------------------------------------------ failures
def test_interrupted_download(store):
    store.mode = "truncate"
    with pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    message = str(info.value)
    assert hub.weights_url(FULL_NAME) in message
    assert _cached_weights() in message, "the error must say where to put the file by hand"
    assert "interrupted" in message
    assert _files_under(_cache()) == []


def test_interrupted_chunked_download(store):
    store.mode = "chunked-truncate"
    with pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    assert hub.weights_url(FULL_NAME) in str(info.value)
    assert _cached_weights() in str(info.value)
    assert _files_under(_cache()) == []


def test_download_alone_interrupted(store, tmp_path):
    store.mode = "truncate"
    url = hub.weights_url(FULL_NAME)
    dest = str(tmp_path / "elsewhere" / "weights.pdparams")
    with pytest.raises(hub.DownloadError) as info:
        hub.download(url, dest)
    assert url in str(info.value) and dest in str(info.value)
    assert _files_under(str(tmp_path / "elsewhere")) == []
    assert len(store.requests) == 1


def test_download_alone_succeeds(store, served_weights, tmp_path):
    dest = str(tmp_path / "dl" / "w.pdparams")
    assert hub.download(hub.weights_url(FULL_NAME), dest, validate=read_state_dict) == dest
    assert _files_under(str(tmp_path / "dl")) == [dest]
    loaded = read_state_dict(dest)
    assert sorted(loaded) == sorted(served_weights)
    np.testing.assert_array_equal(loaded["pos_embed"], served_weights["pos_embed"])


def test_corrupt_download(store):
    store.mode = "garbage"
    with pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    message = str(info.value)
    assert "corrupt" in message
    assert hub.weights_url(FULL_NAME) in message and _cached_weights() in message
    assert _files_under(_cache()) == []


def test_http_404(store, monkeypatch):
    monkeypatch.setenv(hub.HUB_URL_ENV, os.environ[hub.HUB_URL_ENV] + "/no/such/mirror")
    with pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    message = str(info.value)
    assert hub.weights_url(FULL_NAME) in message and "/no/such/mirror/" in message
    assert "404" in message
    assert _cached_weights() in message
    assert len(store.requests) == 1
    assert _files_under(_cache()) == []


def test_no_server_listening(monkeypatch):
    monkeypatch.setenv(hub.HUB_URL_ENV, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    message = str(info.value)
    assert hub.weights_url(FULL_NAME) in message
    assert _cached_weights() in message
    assert _files_under(_cache()) == []
    assert not os.path.exists(_cache()), "a failed download leaves no (empty) cache folders behind"
    assert info.value.__cause__ is None, "one message, not a chain of urllib tracebacks"


def test_download_error_keeps_its_cause_when_debugging(monkeypatch, caplog):
    monkeypatch.setenv(hub.HUB_URL_ENV, f"http://127.0.0.1:{_closed_port()}")
    with caplog.at_level(logging.DEBUG, logger="paddlemix_eva.utils.hub"), pytest.raises(hub.DownloadError) as info:
        EVA02VisionTransformer.from_pretrained(NAME)
    assert info.value.__cause__ is not None


def test_unknown_name_suggests_close_matches(store):
    with pytest.raises(KeyError, match="eva02_Ti_pt_in21k_ft_in1k_p14"):
        EVA02VisionTransformer.from_pretrained("eva02_Ti_pt_in21k_ft_in1k_p15")
    assert store.requests == []
