"""Re-keying in the middle of traffic: the server asks for new keys every few hundred KiB.

pysshfs reads the SFTP channel's packets itself while the connection is steady
(ssh/leanpackets.py) and leaves everything around a key exchange to paramiko; a server that
re-keys often makes the two take turns many times within one file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.support.mount import Mounter
from tests.support.sshd import start_sshd

SIZE = 6 << 20


def test_data_survives_server_rekeys(mounter: Mounter, tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "rekey", extra_config=["RekeyLimit 256K", "LogLevel DEBUG1"])
    try:
        root = server.root / "rk"
        root.mkdir()
        served = os.urandom(SIZE)
        (root / "down.bin").write_bytes(served)
        mnt = mounter.new_mountpoint()
        m = mounter(args=[f"testhost:{root}", str(mnt), *server.client_args()],
                    root=root, mnt=mnt)

        with open(m.mnt / "down.bin", "rb") as f:
            got = f.read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(served).hexdigest()

        written = os.urandom(SIZE)
        with open(m.mnt / "up.bin", "wb") as f:
            for at in range(0, SIZE, 128 << 10):
                f.write(written[at:at + (128 << 10)])
        assert (root / "up.bin").read_bytes() == written

        names = sorted(f"f{i:03d}" for i in range(200))
        for name in names:  # many small replies between the re-keys too
            (m.mnt / name).write_bytes(name.encode())
        assert sorted(n for n in os.listdir(m.mnt) if n.startswith("f")) == names
        assert all((root / n).read_bytes() == n.encode() for n in names)
        m.unmount()
        # (each side re-keys about every 256 KiB it sends: dozens of exchanges)
        assert server.log_text().count("ssh_set_newkeys: rekeying") >= 10, \
            server.log_text()[-2000:]
    finally:
        for problem in mounter.cleanup():
            pytest.fail(problem, pytrace=False)
        mounter.mounts.clear()
        server.stop()
