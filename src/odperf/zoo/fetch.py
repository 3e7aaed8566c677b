"""Download a zoo tarball and unpack it into the model folder: a complete model folder or nothing.

The download and the extraction happen in a hidden temporary folder inside the model folder (same file
system), and only a verified, fully extracted model is renamed into place, in one atomic step. A short
body (fewer bytes than Content-Length or the registry's size), a wrong sha256, a damaged archive or an
archive member that would land outside the model folder (absolute path, ``..``, a link pointing out, a
device file) leaves nothing behind and says which check failed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import TextIO

from odperf import __version__
from odperf.errors import FetchError
from odperf.zoo import catalog
from odperf.zoo.registry import ModelSpec, get, resolve_model_dir

CHUNK = 1 << 20


def url_for(spec: ModelSpec, url_base: str | None = None) -> str:
    """The tarball URL, with the zoo's base swapped for ``url_base`` (or ``ODPERF_URL_BASE``): a mirror
    keeps the zoo's layout below its base (``<base>/<tarball>.tar.gz``, ``<base>/tf2/<date>/...``)."""
    if not spec.url:
        raise FetchError(f"model {spec.name} has no download URL (embedded models ship with odperf; "
                         f"train one with `odperf zoo train {spec.name}`)")
    base = url_base or os.environ.get("ODPERF_URL_BASE")
    if not base:
        return spec.url
    rest = spec.url[len(catalog.TF1_URL_BASE):] if spec.url.startswith(catalog.TF1_URL_BASE) else "/" + spec.url.rsplit("/", 1)[-1]
    return base.rstrip("/") + rest


def fetch(ref: str | ModelSpec, model_dir: str | Path | None = None, url_base: str | None = None,
          force: bool = False, progress: TextIO | bool | None = True, timeout: float = 60.0) -> Path:
    """Fetch a registry model into ``model_dir`` and return its folder (``<model_dir>/<tarball>``).

    An already present model is left as it is unless ``force``. ``progress``: a stream, True for the
    current stderr, None or False for silence.
    """
    if progress is True:
        progress = sys.stderr
    elif progress is False:
        progress = None
    spec = get(ref)
    if spec.family == "embedded" or not spec.tarball:
        raise FetchError(f"model {spec.name} is embedded: it ships with odperf and is not downloaded; "
                         f"retrain it with `odperf zoo train {spec.name}`")
    root = resolve_model_dir(model_dir)
    final = root / spec.tarball
    if spec.is_present(root) and not force:
        _say(progress, f"{spec.name}: already present in {final}")
        return final
    url = url_for(spec, url_base)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"cannot create the model folder {root} ({exc.strerror}); pass --model-dir") from exc
    work = Path(tempfile.mkdtemp(prefix=f".{spec.tarball}.part-", dir=root))
    try:
        archive = work / f"{spec.tarball}.tar.gz"
        download(url, archive, size=spec.size, sha256=spec.sha256, progress=progress, label=spec.name, timeout=timeout)
        unpacked = work / "unpacked"
        safe_extract(archive, unpacked, label=url)
        model = _model_root(unpacked, spec.tarball, url)
        previous = work / "previous"
        if final.exists():  # force, or an earlier folder without a detector: swap it out
            final.rename(previous)
        try:
            model.rename(final)
        except OSError as exc:
            if previous.exists() and not final.exists():
                previous.rename(final)
            raise FetchError(f"cannot move the extracted model into {final} ({exc.strerror})") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(progress, f"{spec.name}: ready in {final}")
    return final


def download(url: str, dest: Path, size: int | None = None, sha256: str | None = None,
             progress: TextIO | None = None, label: str = "", timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest``, checking Content-Length, ``size`` and ``sha256``; FetchError if not."""
    request = urllib.request.Request(url, headers={"User-Agent": f"odperf/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url}: cannot connect ({reason}); offline machines can use a mirror with "
                         "--url-base or copy the extracted tarball into the model folder") from exc
    header = response.headers.get("Content-Length")
    expected = int(header) if header and header.isdigit() else None
    digest = hashlib.sha256()
    got = 0
    meter = _Meter(progress, label or url, expected or size)
    with response, open(dest, "wb") as out:
        while True:
            try:
                chunk = response.read(CHUNK)
            except http.client.IncompleteRead as exc:
                chunk = exc.partial
                digest.update(chunk)
                out.write(chunk)
                got += len(chunk)
                break
            except OSError as exc:
                raise FetchError(f"{url}: connection lost after {got} bytes ({exc}); nothing was kept - try again") from exc
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            got += len(chunk)
            meter.update(got)
    meter.done(got)
    if expected is not None and got != expected:
        raise FetchError(f"{url}: download truncated: got {got} of {expected} bytes (Content-Length); "
                         "nothing was kept - try again")
    if size is not None and got != size:
        raise FetchError(f"{url}: got {got} bytes, the registry expects {size}; nothing was kept")
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise FetchError(f"{url}: sha256 {digest.hexdigest()} does not match the registry's {sha256}; "
                         "nothing was kept")
    return dest


def unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting ``member`` could write outside the target folder, or None if it is safe."""
    name = member.name
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in path.parts:
        return "path with '..'"
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        return "device or fifo file"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith("/"):
            return f"link to absolute path {link!r}"
        base = path.parent if member.issym() else PurePosixPath()
        depth = 0
        for part in (base / link).parts:
            depth += -1 if part == ".." else (0 if part == "." else 1)
            if depth < 0:
                return f"link pointing outside the archive ({link!r})"
    return None


def safe_extract(archive: Path, dest: Path, label: str = "") -> None:
    """Extract a (gzipped) tar into ``dest`` after checking every member; FetchError names what failed."""
    where = label or str(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads to the end: a truncated archive fails here
            for member in members:
                reason = unsafe_reason(member)
                if reason:
                    raise FetchError(f"{where}: refused to extract {member.name!r}: {reason}; nothing was kept")
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise FetchError(f"{where}: refused to extract {exc.tarinfo.name!r}: {exc}; nothing was kept") from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise FetchError(f"{where}: not a complete tar.gz archive ({exc}); nothing was kept - try again") from exc


def _model_root(unpacked: Path, tarball: str, url: str) -> Path:
    """The extracted model folder: ``<tarball>/`` as the zoo packs it, else the single top folder."""
    candidates = [unpacked / tarball]
    entries = list(unpacked.iterdir()) if unpacked.is_dir() else []
    if len(entries) == 1 and entries[0].is_dir():
        candidates.append(entries[0])
    candidates.append(unpacked)
    for folder in candidates:
        if (folder / "frozen_inference_graph.pb").is_file() or (folder / "saved_model" / "saved_model.pb").is_file() \
                or (folder / "saved_model.pb").is_file():
            return folder
    found = ", ".join(sorted(p.name for p in entries)[:10]) or "nothing"
    raise FetchError(f"{url}: the archive holds no detector (no frozen_inference_graph.pb or "
                     f"saved_model/saved_model.pb; top level: {found}); nothing was kept")


def _say(stream: TextIO | None, text: str) -> None:
    if stream is not None:
        print(text, file=stream, flush=True)


class _Meter:
    """Download progress on a stream: one rewritten line on a terminal, a line per quarter otherwise."""

    def __init__(self, stream: TextIO | None, label: str, total: int | None) -> None:
        self.stream, self.label, self.total = stream, label, total
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.last = 0.0
        self.quarter = 0

    def _line(self, got: int) -> str:
        mb = got / 1e6
        if self.total:
            return f"{self.label}: {mb:.1f} / {self.total / 1e6:.1f} MB ({100 * got / self.total:.0f}%)"
        return f"{self.label}: {mb:.1f} MB"

    def update(self, got: int) -> None:
        if self.stream is None:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last >= 0.25:
                self.last = now
                print("\r" + self._line(got), end="", file=self.stream, flush=True)
        elif self.total and got * 4 // self.total > self.quarter:
            self.quarter = got * 4 // self.total
            _say(self.stream, self._line(got))

    def done(self, got: int) -> None:
        if self.stream is None:
            return
        if self.tty:
            print("\r" + self._line(got), file=self.stream, flush=True)
        elif not self.total or self.quarter < 4:
            _say(self.stream, self._line(got))
