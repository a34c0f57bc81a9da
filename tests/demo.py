"""Demo: mount a directory of a throwaway sshd with pysshfs, use it, unmount.

    bash packaging/bootstrap.sh && .venv/bin/python tests/demo.py

Starts /usr/sbin/sshd on a free 127.0.0.1 port (its own keys, nothing of yours is touched),
serves a sample directory, mounts it with the real `pysshfs` command, runs a few commands on
the mount, shows what arrived on the server, unmounts and stops the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.sshd import start_sshd  # noqa: E402


def pysshfs_command() -> list[str]:
    """The installed console script next to this Python, else `python -m pysshfs`."""
    script = Path(sys.executable).parent / "pysshfs"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pysshfs"]


def say(text: str) -> None:
    try:
        print(text, flush=True)
    except BrokenPipeError:
        pass


def show(cmd: list[str], **kw) -> None:  # type: ignore[no-untyped-def]
    say(f"$ {' '.join(cmd)}")
    subprocess.run(cmd, check=True, **kw)


def mounted(mnt: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(mnt) for line in f)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pysshfs-demo-"))
    sshd = start_sshd(work / "sshd")
    mnt = work / "mnt"
    mnt.mkdir()
    sample = sshd.root / "sample"
    (sample / "notes").mkdir(parents=True)
    (sample / "hello.txt").write_text("Hello from the SSH server!\n")
    (sample / "notes" / "todo.md").write_text("- try pysshfs\n- unmount with fusermount3 -u\n")
    (sample / "data.bin").write_bytes(os.urandom(256 * 1024))
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    say(f"sshd listens on 127.0.0.1:{sshd.port}, serving {sample}")
    try:
        show([*pysshfs_command(), f"testhost:{sample}", str(mnt), "-F", str(sshd.ssh_config)],
             env=env)
        say(f"mounted: {mounted(mnt)}")
        show(["ls", "-l", str(mnt)])
        show(["cat", str(mnt / "hello.txt")])
        show(["df", "-h", str(mnt)])
        say(f"$ echo 'written through the mount' > {mnt}/from-client.txt")
        (mnt / "from-client.txt").write_text("written through the mount\n")
        say("--- on the server side:")
        show(["ls", "-l", str(sample)])
        show(["cat", str(sample / "from-client.txt")])
        say(f"$ fusermount3 -u {mnt}")
    finally:
        # clean up before printing anything: stdout may be a closed pipe (demo.py | head)
        if mounted(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 15
            while mounted(mnt) and time.monotonic() < deadline:
                time.sleep(0.05)
            if mounted(mnt):
                subprocess.run(["fusermount3", "-uz", str(mnt)], stderr=subprocess.DEVNULL)
        still = mounted(mnt)
        sshd.stop()
        if not still:
            shutil.rmtree(work, ignore_errors=True)
    say(f"mounted: {still}")
    say("demo done")
    return 1 if still else 0


if __name__ == "__main__":
    raise SystemExit(main())
