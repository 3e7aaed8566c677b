"""A real OpenSSH server on 127.0.0.1 for the board tests: a temporary host key, an authorised key,
a free loopback port and a known_hosts file that holds the host key (host keys are checked as ssh
always checks them). The "board" behind it is this machine with the stand-in's Python 3.6 + TF 1.15."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SSHD = "/usr/sbin/sshd"


def board_python(runtime: str = "tensorflow") -> str:
    """The stand-in board's interpreter with ``runtime`` (tensorflow, torch, or numpy: no framework; made
    once by tests/board_stand_in.sh)."""
    out = subprocess.run(["bash", str(ROOT / "tests" / "board_stand_in.sh"), *([runtime] if runtime != "tensorflow" else [])],
                         check=True,
                         stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """sshd -D on a loopback port, run by the test; ``stop()`` ends it (and every session it holds)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.user = os.environ.get("USER") or __import__("getpass").getuser()
        for name in ("host", "client"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
        (folder / "authorized_keys").write_text((folder / "client.pub").read_text())
        host_key = (folder / "host.pub").read_text().split()
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_key[0]} {host_key[1]}\n")
        config = folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host'}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", f"PidFile {folder / 'sshd.pid'}",
            "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
            "PermitRootLogin prohibit-password", "AcceptEnv LANG", "LogLevel ERROR", "",
        ]))
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory
        self.log = open(folder / "sshd.log", "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()}")
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen")

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def ssh_options(self, known_hosts: Path | None = None) -> list[str]:
        return ["-F", "none", "-i", str(self.folder / "client"), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]

    def ssh_config(self) -> Path:
        """An ssh config file with this server's key and known_hosts (for ``?ssh_config=``)."""
        config = self.folder / "ssh_config"
        config.write_text(f"Host 127.0.0.1\n  IdentityFile {self.folder / 'client'}\n  IdentitiesOnly yes\n"
                          f"  UserKnownHostsFile {self.known_hosts}\n  GlobalKnownHostsFile /dev/null\n")
        return config

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def main(argv: list[str]) -> int:
    """``python tests/sshd_board.py COMMAND...``: COMMAND with a stand-in board's sshd running, its
    ``--odperf-board`` value in ``$ODPERF_BOARD_SSH`` (the stand-in's Python 3.6 + TF 1.15, reached over
    real SSH with checked host keys) and that interpreter in ``$ODPERF_BOARD_PYTHON``; sshd ends with it."""
    import shutil
    import sys
    import tempfile

    if not argv:
        print("usage: python tests/sshd_board.py COMMAND [ARGS...]", file=sys.stderr)
        return 2
    python = board_python()
    folder = Path(tempfile.mkdtemp(prefix="odperf-sshd-"))
    sshd = Sshd(folder)
    try:
        env = dict(os.environ, ODPERF_BOARD_SSH=f"tx2={sshd.url}?python={python}&ssh_config={sshd.ssh_config()}",
                   ODPERF_BOARD_PYTHON=python)
        return subprocess.run(argv, env=env).returncode
    finally:
        sshd.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
