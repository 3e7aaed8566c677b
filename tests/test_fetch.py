"""Fetching tarballs from an HTTP server on 127.0.0.1 that serves archives the tests build."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
import urllib.parse
from pathlib import Path
from collections import Counter

import pytest

from odperf.errors import FetchError
from odperf.zoo import get
from odperf.zoo.fetch import fetch, safe_extract, url_for

SPEC = get("ssd_mobilenet_v1")


def make_tarball(top: str, files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buf.getvalue()


def good_tarball(top: str = SPEC.tarball) -> bytes:
    # fetch checks the layout, not the graph: the loader tests cover parsing
    return make_tarball(top, {"frozen_inference_graph.pb": b"\x0a\x05graph" * 2000, "pipeline.config": b"model {}"})


class Server:
    """Serves ``routes[path] = (body, modes)``: the n-th request of a path gets ``modes[n]`` (the last one
    from then on): "ok", "lie" (Content-Length too large) or "cut" (half the body, then the connection
    closes). ``hits`` counts the requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, list[str]]] = {}
        self.hits: Counter[str] = Counter()
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits[self.path] += 1
                if self.path not in routes:
                    self.send_error(404, "no such tarball")
                    return
                body, modes = routes[self.path]
                mode = modes[min(hits[self.path], len(modes)) - 1]
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(body) + (1000 if mode == "lie" else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def path(self, spec) -> str:
        return urllib.parse.urlsplit(url_for(spec, self.base)).path

    def serve(self, spec, body: bytes, *modes: str) -> None:
        self.routes[self.path(spec)] = (body, list(modes or ["ok"]))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_url_base_keeps_the_zoo_layout():
    assert url_for(SPEC, "http://mirror/zoo/") == f"http://mirror/zoo/{SPEC.tarball}.tar.gz"
    tf2 = get("ssd_mobilenet_v2_320x320")
    assert url_for(tf2, "http://mirror/zoo") == f"http://mirror/zoo/tf2/20200711/{tf2.tarball}.tar.gz"
    assert url_for(SPEC) == SPEC.url


def test_good_tarball_lands_complete(server, tmp_path, capsys):
    body = good_tarball()
    server.serve(SPEC, body)
    folder = fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base)
    assert folder == tmp_path / SPEC.tarball
    assert (folder / "frozen_inference_graph.pb").read_bytes() == b"\x0a\x05graph" * 2000
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPEC.tarball]  # no temporary left
    assert SPEC.is_present(tmp_path)
    err = capsys.readouterr().err
    assert "ready" in err and SPEC.name in err
    # a second fetch finds it present and downloads nothing
    server.routes.clear()
    assert fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base) == folder


def test_progress_is_a_tqdm_bar_on_the_stream(server, tmp_path):
    pytest.importorskip("tqdm")  # a dependency; a --no-deps install prints a line before and after instead
    server.serve(SPEC, good_tarball())
    stream = io.StringIO()
    fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=stream)
    assert f"{SPEC.name}: 100%" in stream.getvalue() and "ready" in stream.getvalue()


def test_sha256_and_size_are_verified(server, tmp_path):
    body = good_tarball()
    server.serve(SPEC, body)
    right = dataclasses.replace(SPEC, sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    assert fetch(right, model_dir=tmp_path / "a", url_base=server.base, progress=None).is_dir()
    wrong = dataclasses.replace(SPEC, sha256="0" * 64)
    server.hits.clear()
    with pytest.raises(FetchError, match=f"sha256 does not match the registry's {'0' * 64} in each of 2 tries"):
        fetch(wrong, model_dir=tmp_path / "b", url_base=server.base, progress=None, retries=1)
    assert server.hits[server.path(SPEC)] == 2  # a mismatch may be damage in transit: tried again
    assert list((tmp_path / "b").iterdir()) == []
    short = dataclasses.replace(SPEC, size=len(body) + 1)
    with pytest.raises(FetchError, match=f"got {len(body)} bytes, the registry expects {len(body) + 1}"):
        fetch(short, model_dir=tmp_path / "c", url_base=server.base, progress=None)
    assert list((tmp_path / "c").iterdir()) == []


@pytest.mark.parametrize("mode", ["lie", "cut"])
def test_truncated_download_leaves_nothing(server, tmp_path, mode):
    server.serve(SPEC, good_tarball(), mode)
    with pytest.raises(FetchError, match=r"download truncated \(.*\d+ bytes read.*\) in each of 1 try") as err:
        fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=None, retries=0)
    assert "nothing was kept" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_broken_download_is_tried_again(server, tmp_path):
    server.serve(SPEC, good_tarball(), "cut", "lie", "ok")
    assert fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=None, retries=2).is_dir()
    assert server.hits[server.path(SPEC)] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [SPEC.tarball]
    server.serve(SPEC, good_tarball(), "cut")
    server.hits.clear()
    with pytest.raises(FetchError, match="truncated .* in each of 2 tries"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path / "again", url_base=server.base, progress=None, retries=1)
    assert server.hits[server.path(SPEC)] == 2 and list((tmp_path / "again").iterdir()) == []


def test_a_full_disk_is_named_and_leaves_nothing(server, tmp_path):
    # A file-size limit makes the download's writes fail as a full disk would (EFBIG instead of ENOSPC).
    noise = os.urandom(200_000)  # incompressible: the tarball is larger than the limit
    server.serve(SPEC, make_tarball(SPEC.tarball, {"frozen_inference_graph.pb": noise}))
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, resource.RLIM_INFINITY))\n"
        "from odperf.errors import FetchError\n"
        "from odperf.zoo.fetch import fetch\n"
        "try:\n"
        "    fetch('ssd_mobilenet_v1', model_dir=sys.argv[1], url_base=sys.argv[2], progress=None)\n"
        "except FetchError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path), server.base], capture_output=True,
                          text=True, timeout=120)
    assert "cannot write the download into" in done.stdout and "File too large" in done.stdout, done.stderr
    assert "free disk space or pass --model-dir" in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_archive_escaping_the_folder_leaves_nothing(server, tmp_path):
    evil = tarfile.TarInfo(f"{SPEC.tarball}/../../escaped.txt")
    evil.size = 3
    server.serve(SPEC, make_tarball(SPEC.tarball, {"frozen_inference_graph.pb": b"g"}, [evil]))
    with pytest.raises(FetchError, match=r"refused to extract .*escaped.txt.* outside the destination"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path / "models", url_base=server.base, progress=None)
    assert list((tmp_path / "models").iterdir()) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_corrupt_archive_leaves_nothing(server, tmp_path):
    body = good_tarball()
    server.serve(SPEC, body[:-200] + b"\0" * 200)  # complete download of a damaged file
    with pytest.raises(FetchError, match="not a complete tar.gz archive"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_archive_without_a_detector_is_refused(server, tmp_path):
    server.serve(SPEC, make_tarball(SPEC.tarball, {"README": b"hello"}))
    with pytest.raises(FetchError, match="holds no detector"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_are_reported(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base=server.base, progress=None, retries=0)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_named_with_the_fix(tmp_path):
    with pytest.raises(FetchError, match=r"cannot connect \(.*; 1 try\); offline machines can use a mirror"):
        fetch("ssd_mobilenet_v1", model_dir=tmp_path, url_base="http://127.0.0.1:9/zoo", progress=None, retries=0)
    assert list(tmp_path.iterdir()) == []


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("m/../../x"), "outside the destination"),
        (_member("m/link", tarfile.SYMTYPE, "../../outside"), "outside the destination"),
        (_member("m/link", tarfile.SYMTYPE, "/etc/passwd"), "absolute path"),
        (_member("m/hard", tarfile.LNKTYPE, "../x"), "outside the destination"),
        (_member("m/dev", tarfile.CHRTYPE), "special file"),
        (_member("m/fifo", tarfile.FIFOTYPE), "special file"),
    ],
)
def test_unsafe_members_are_refused_by_name(tmp_path, member, reason):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tarball("m", {"frozen_inference_graph.pb": b"g"}, [member]))
    with pytest.raises(FetchError, match=rf"refused to extract '{member.name}': .*{reason}"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "x").exists() and not (tmp_path / "outside").exists()


def test_safe_members_pass_and_absolute_paths_stay_inside(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(make_tarball("m", {"frozen_inference_graph.pb": b"g"},
                                     [_member("m/alias", tarfile.SYMTYPE, "frozen_inference_graph.pb"),
                                      _member("/m/absolute.txt")]))
    safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "m" / "alias").read_bytes() == b"g"
    assert (tmp_path / "out" / "m" / "absolute.txt").is_file()  # the leading slash is stripped


def test_embedded_models_are_not_fetched(tmp_path):
    spec = dataclasses.replace(SPEC, name="tiny", family="embedded", tarball=None, url=None, path=tmp_path)
    with pytest.raises(FetchError, match="embedded"):
        fetch(spec, model_dir=tmp_path, progress=None)


def test_zoo_fetch_command(server, tmp_path):
    server.serve(SPEC, good_tarball())
    env = {**os.environ, "ODPERF_FIXTURES": str(tmp_path / "fixtures")}
    cmd = [sys.executable, "-m", "odperf.cli", "zoo", "fetch", "A", "rfcn_resnet101",
           "--model-dir", str(tmp_path / "models"), "--url-base", server.base]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2  # A lands, rfcn is not on the mirror
    assert "ssd_mobilenet_v1: ready" in done.stderr and "rfcn_resnet101: " in done.stderr and "HTTP 404" in done.stderr
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [SPEC.tarball]


def test_no_registry_entry_has_a_hash_or_size_odperf_never_took():
    """The README says no zoo entry carries a sha256 or size (none was ever taken from a download): an entry
    given one must come with that sentence changed."""
    from odperf.zoo.registry import all_models

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert "so no entry has them: a zoo download is checked for completeness" in readme
    assert [s.name for s in all_models() if s.sha256 is not None or s.size is not None] == []
