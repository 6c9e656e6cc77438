"""Fetch the studies' official archives into ``data/`` with checksums, resume and a progress bar.

Each dataset has a manifest ``depthlib/data/manifests/<name>.yaml`` (URLs, sizes and sha256 where
published, where each file goes). Downloads go to ``<file>.part`` and resume with an HTTP ``Range`` request;
a finished file is checked against its size and sha256 (when known), its computed sha256 is stored beside it
(``<file>.sha256``), and archives are unpacked. Without network the first connection fails within
``connect_timeout`` seconds and the error says what to fetch by hand and where to put it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import pathlib
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml
from tqdm.auto import tqdm

__all__ = ["Manifest", "list_manifests", "load_manifest", "download", "download_file", "DownloadError"]

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that cannot complete (offline, HTTP error, checksum mismatch); the message says what to do."""


@dataclass
class ManifestFile:
    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    extract: bool = False
    extract_to: str | None = None
    strip: bool = False


@dataclass
class Manifest:
    name: str
    description: str
    dest: str
    source: str = ""
    files: list[ManifestFile] = field(default_factory=list)
    manual: str = ""

    def instructions(self, root: pathlib.Path) -> str:
        """What to fetch by hand and where to put it."""
        lines = [f"To get {self.name} ({self.description}) by hand, from {self.source or 'the URLs below'}:"]
        for f in self.files:
            where = root / self.dest / f.filename
            lines.append(f"  - {f.url}\n    -> {where}" + ("  (then unpack it there)" if f.extract else ""))
        if self.manual:
            lines.append(self.manual.strip())
        lines.append(f"then run `depthlib download {self.name} --root {root}` again to verify and unpack.")
        return "\n".join(lines)


def _manifest_dir():
    return resources.files("depthlib.data") / "manifests"


def list_manifests() -> list[str]:
    """Names accepted by :func:`download`."""
    return sorted(p.name[:-5] for p in _manifest_dir().iterdir() if p.name.endswith(".yaml"))


def load_manifest(name_or_path: str | os.PathLike) -> Manifest:
    """Load a manifest by name (``nyudepthv2``) or from a yaml file."""
    path = pathlib.Path(name_or_path)
    if path.suffix == ".yaml" and path.is_file():
        text = path.read_text()
    else:
        res = _manifest_dir() / f"{name_or_path}.yaml"
        if not res.is_file():
            raise ValueError(f"download: unknown dataset {str(name_or_path)!r}; available: {list_manifests()}")
        text, path = res.read_text(), pathlib.Path(str(res))
    raw: dict[str, Any] = yaml.safe_load(text)
    try:
        files = [ManifestFile(**f) for f in raw.get("files") or []]
        return Manifest(name=raw["name"], description=raw["description"], dest=raw["dest"],
                        source=raw.get("source", ""), files=files, manual=raw.get("manual") or "")
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed manifest ({err})") from None


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_reachable(url: str, timeout: float) -> None:
    """Resolve and connect within ``timeout`` seconds; name resolution has no timeout of its own, so it
    runs in a worker thread that is abandoned when it overruns."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)

    def connect() -> None:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise DownloadError(f"{parts.hostname}:{port} did not answer within {timeout:g} s") from None
    except OSError as err:
        raise DownloadError(f"cannot connect to {parts.hostname}:{port} ({err})") from None
    finally:
        pool.shutdown(wait=False)


def download_file(url: str, target: pathlib.Path, *, size: int | None = None, sha256: str | None = None,
                  connect_timeout: float = 5.0, read_timeout: float = 60.0, progress: bool = True) -> pathlib.Path:
    """Download ``url`` to ``target``, resuming ``target.part`` with an HTTP Range request.

    Returns ``target`` once its size and sha256 (when given) match; a mismatching file is renamed
    ``<target>.bad`` and :class:`DownloadError` is raised.
    """
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        _verify(target, size, sha256)
        return target
    part = target.with_name(target.name + ".part")
    _check_reachable(url, connect_timeout)
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "depthlib-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=read_timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the part file is already complete
            response = None
        else:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{url}: {getattr(err, 'reason', err)}") from None
    if response is not None:
        with response:
            if offset and response.status != 206:  # the server ignored Range: start over
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else size
            mode = "ab" if offset else "wb"
            with part.open(mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                              desc=target.name, disable=not progress) as bar:
                while True:
                    try:
                        block = response.read(CHUNK)
                    except (OSError, TimeoutError) as err:
                        raise DownloadError(f"{url}: interrupted after {part.stat().st_size} bytes ({err}); "
                                            f"run again to resume") from None
                    if not block:
                        break
                    out.write(block)
                    bar.update(len(block))
    os.replace(part, target)
    _verify(target, size, sha256)
    return target


def _verify(path: pathlib.Path, size: int | None, sha256: str | None) -> None:
    actual_size = path.stat().st_size
    problem = None
    if size is not None and actual_size != size:
        problem = f"size {actual_size} bytes, expected {size}"
    digest = None
    if problem is None:
        digest = _sha256(path)
        if sha256 is not None and digest != sha256.lower():
            problem = f"sha256 {digest}, expected {sha256}"
    if problem is not None:
        bad = path.with_name(path.name + ".bad")
        os.replace(path, bad)
        raise DownloadError(f"{path}: {problem}; moved to {bad}, run again to download afresh")
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")


def _extract(archive: pathlib.Path, dest: pathlib.Path, strip: bool) -> None:
    marker = archive.with_name(archive.name + ".extracted")
    if marker.is_file():
        return
    tmp = dest / f".unpack-{archive.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.unpack_archive(str(archive), str(tmp))
    source = tmp
    entries = list(tmp.iterdir())
    if strip and len(entries) == 1 and entries[0].is_dir():
        source = entries[0]
    for item in source.iterdir():
        final = dest / item.name
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        os.replace(item, final)
    shutil.rmtree(tmp, ignore_errors=True)
    marker.touch()


def download(name: str, root: str | os.PathLike = "data", *, connect_timeout: float = 5.0,
             progress: bool = True) -> pathlib.Path:
    """Fetch, verify and unpack dataset ``name`` (see :func:`list_manifests`) under ``root``.

    Returns the dataset folder. Raises :class:`DownloadError` with the manual instructions when a file
    cannot be fetched (offline, HTTP error, checksum mismatch) or the dataset has no public URL.
    """
    manifest = load_manifest(name)
    root = pathlib.Path(root)
    dest = root / manifest.dest
    if not manifest.files:
        raise DownloadError(f"{manifest.name} has no public download.\n{manifest.instructions(root)}")
    for f in manifest.files:
        target = dest / f.filename
        try:
            download_file(f.url, target, size=f.size, sha256=f.sha256, connect_timeout=connect_timeout,
                          progress=progress)
        except DownloadError as err:
            raise DownloadError(f"{err}\n{manifest.instructions(root)}") from None
        if f.extract:
            out = dest / f.extract_to if f.extract_to else dest
            out.mkdir(parents=True, exist_ok=True)
            _extract(target, out, f.strip)
    if manifest.manual:
        print(manifest.manual.strip())
    return dest
