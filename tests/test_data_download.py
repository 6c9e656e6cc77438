"""Downloads: resume with HTTP Range, checksums, unpacking, and a fast clear failure offline. Only 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
import time

import pytest
import yaml

from depthlib.data import download as dl

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        self.ranges.append(header or "")
        start = 0
        if header:
            start = int(header.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _RangeHandler.files, _RangeHandler.ranges = {"/data.bin": PAYLOAD}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _RangeHandler
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_sha256(server, tmp_path):
    base, _ = server
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    out = dl.download_file(f"{base}/data.bin", tmp_path / "data.bin", size=len(PAYLOAD), sha256=sha, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert (tmp_path / "data.bin.sha256").read_text().startswith(sha)


def test_download_resumes_a_partial_file(server, tmp_path):
    base, handler = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_000])
    out = dl.download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                           progress=False)
    assert out.read_bytes() == PAYLOAD
    assert handler.ranges == ["bytes=300000-"]


def test_checksum_mismatch_is_reported_and_quarantined(server, tmp_path):
    base, _ = server
    with pytest.raises(dl.DownloadError, match="sha256 .* expected 0000"):
        dl.download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256="0" * 64, progress=False)
    assert (tmp_path / "data.bin.bad").is_file() and not (tmp_path / "data.bin").exists()


def test_http_error_is_reported(server, tmp_path):
    base, _ = server
    with pytest.raises(dl.DownloadError, match="HTTP 404"):
        dl.download_file(f"{base}/missing.bin", tmp_path / "missing.bin", progress=False)


def test_manifest_download_unpacks(server, tmp_path):
    base, handler = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("nyudepthv2/val/official/00001.h5")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    handler.files["/nyu.tar.gz"] = buf.getvalue()
    manifest = tmp_path / "toy.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "toy", "description": "a toy archive", "dest": "toy",
        "files": [{"url": f"{base}/nyu.tar.gz", "filename": "nyu.tar.gz", "sha256": None, "extract": True,
                   "strip": True}]}))
    dest = dl.download(str(manifest), tmp_path / "data", progress=False)
    assert (dest / "val" / "official" / "00001.h5").read_bytes() == b"hello"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    manifest = dl.load_manifest("nyu_labeled")
    port = _closed_port()
    for f in manifest.files:
        f.url = f"http://127.0.0.1:{port}/{f.filename}"
    monkeypatch.setattr(dl, "load_manifest", lambda name: manifest)
    with pytest.raises(dl.DownloadError) as err:
        dl.download("nyu_labeled", tmp_path, connect_timeout=2.0, progress=False)
    text = str(err.value)
    assert "cannot connect to 127.0.0.1" in text
    assert str(tmp_path / "nyu_labeled" / "nyu_depth_v2_labeled.mat") in text and "by hand" in text


def test_unanswered_connection_gives_up_after_the_timeout(monkeypatch, tmp_path):
    # A name lookup or connect that hangs (offline DNS): the worker thread is abandoned at the timeout.
    monkeypatch.setattr(dl.socket, "create_connection", lambda *a, **k: time.sleep(3))
    with pytest.raises(dl.DownloadError, match="did not answer within 0.2 s"):
        dl.download_file("http://example.invalid/x", tmp_path / "x", connect_timeout=0.2, progress=False)


def test_dataset_without_public_url_explains(tmp_path):
    with pytest.raises(dl.DownloadError, match="CodaLab"):
        dl.download("mai2021", tmp_path)


def test_every_manifest_loads_and_unknown_name_is_named():
    names = dl.list_manifests()
    assert {"nyudepthv2", "nyu_labeled", "nyu_png", "kitti_depth", "diw", "mai2021"} <= set(names)
    for name in names:
        m = dl.load_manifest(name)
        assert all(f.url.startswith(("http://", "https://")) for f in m.files)
    with pytest.raises(ValueError, match="nyu_v3"):
        dl.load_manifest("nyu_v3")
