"""Download a zoo tarball and unpack it into the model folder: a complete model folder or nothing.

pooch downloads (progress through tqdm, retries, the registry's sha256) and tarfile's ``data`` filter
unpacks. Both happen in a hidden temporary folder inside the model folder (same file system), and only a
verified, fully extracted model is renamed into place, in one atomic step. A short body (fewer bytes than
Content-Length or the registry's size) or a wrong sha256 after every retry, a damaged archive, or an
archive member that would land outside the model folder (``..``, a link pointing out, a device file)
leaves nothing behind and says which check failed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, TextIO

from odperf import __version__
from odperf.errors import FetchError
from odperf.zoo import catalog
from odperf.zoo.registry import ModelSpec, get, resolve_model_dir

CHUNK = 1 << 20
RETRIES = 2  # tries after the first, on a lost connection, a short body or a hash mismatch


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
          force: bool = False, progress: TextIO | bool | None = True, timeout: float = 60.0,
          retries: int = RETRIES) -> Path:
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
        download(url, archive, size=spec.size, sha256=spec.sha256, progress=progress, label=spec.name,
                 timeout=timeout, retries=retries)
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
             progress: TextIO | None = None, label: str = "", timeout: float = 60.0, retries: int = RETRIES) -> Path:
    """Download ``url`` to ``dest`` with pooch: a short body (urllib3 checks Content-Length), a lost
    connection or a ``sha256`` mismatch is tried again ``retries`` times (pooch waits 1 s, 2 s, ...);
    then the registry's ``size`` is checked. FetchError names what failed; nothing is left behind."""
    import pooch
    import requests

    tries = f"{retries + 1} tr{'y' if retries == 0 else 'ies'}"
    store = pooch.create(path=dest.parent, base_url="", registry={dest.name: f"sha256:{sha256}" if sha256 else None},
                         urls={dest.name: url}, retry_if_failed=retries)
    downloader = pooch.HTTPDownloader(progressbar=_progress_bar(progress, label or url), chunk_size=CHUNK,
                                      timeout=timeout, headers={"User-Agent": f"odperf/{__version__}"})
    if progress is not None and downloader.progressbar is False:
        _say(progress, f"{label or url}: downloading {url}")
    log = pooch.get_logger()
    level = log.level
    log.setLevel("WARNING")  # its INFO lines name the temporary folder; odperf says what happens itself
    try:
        store.fetch(dest.name, downloader=downloader)
    except requests.exceptions.HTTPError as exc:
        response = exc.response
        raise FetchError(f"{url}: HTTP {response.status_code} {response.reason}") from exc
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
        raise FetchError(f"{url}: download truncated ({_why(exc)}) in each of {tries}; nothing was kept - "
                         "try again") from exc
    except requests.exceptions.RequestException as exc:
        raise FetchError(f"{url}: cannot connect ({_why(exc)}; {tries}); offline machines can use a mirror with "
                         "--url-base or copy the extracted tarball into the model folder") from exc
    except ValueError as exc:  # pooch: the hash of what arrived is not the registry's
        raise FetchError(f"{url}: sha256 does not match the registry's {sha256} in each of {tries} (a changed "
                         "file or a damaged mirror); nothing was kept") from exc
    except OSError as exc:
        raise FetchError(f"cannot write the download into {dest.parent} ({exc.strerror or exc}); free disk "
                         "space or pass --model-dir") from exc
    finally:
        log.setLevel(level)
    got = dest.stat().st_size
    if progress is not None and downloader.progressbar is False:
        _say(progress, f"{label or url}: {got / 1e6:.1f} MB downloaded")
    if size is not None and got != size:
        raise FetchError(f"{url}: got {got} bytes, the registry expects {size}; nothing was kept")
    return dest


def safe_extract(archive: Path, dest: Path, label: str = "") -> None:
    """Extract a (gzipped) tar into ``dest`` with tarfile's ``data`` filter, which refuses members that would
    land outside ``dest`` (``..``, links pointing out or to absolute paths), device files and fifos, and
    strips leading slashes. (pooch's Untar applies that filter only from Python 3.12 on.) FetchError names
    what failed."""
    where = label or str(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads to the end: a truncated archive fails here
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


def _progress_bar(stream: TextIO | None, label: str) -> Any:
    """A tqdm bar on ``stream`` for pooch to fill, or False: no stream, or tqdm not installed (a --no-deps
    install), where a line before and after the download stands in for it."""
    if stream is None:
        return False
    try:
        from tqdm import tqdm
    except ImportError:
        return False
    # pooch tests the bar's truth (a tqdm is true while its total is > 0), then sets the total from Content-Length
    return tqdm(desc=label, total=1, file=stream, unit="B", unit_scale=True, unit_divisor=1000, leave=True)


def _why(exc: BaseException) -> str:
    """The innermost reason requests and urllib3 give (their outer messages repeat the URL)."""
    while exc.__context__ is not None and str(exc.__context__):
        exc = exc.__context__
    return str(exc) or type(exc).__name__
