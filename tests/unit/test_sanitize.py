"""The one sanitiser for server strings: control characters become visible text."""

from __future__ import annotations

import errno
import logging
import sys

from pysshfs.errors import MountError
from pysshfs.sanitize import SafeFormatter, sanitize
from pysshfs.sftp.codec import decode_version
from pysshfs.sftp.errors import SSH_FX_FAILURE, status_error

RAW = "\x1b[2J\rpysshfs: forged line\x1b]0;owned\x07"


def test_control_characters_are_escaped() -> None:
    assert sanitize(RAW) == "\\x1b[2J\\rpysshfs: forged line\\x1b]0;owned\\x07"
    assert sanitize("a\nb\tc\0d\x7fe") == "a\\nb\\tc\\x00d\\x7fe"


def test_printable_text_is_left_alone_and_not_copied() -> None:
    text = "Grüße, 日本語, back\\slash and 'quotes' ~ $HOME"
    assert sanitize(text) is text


def test_c1_bidi_and_line_separators_are_escaped() -> None:
    assert sanitize("a\x9b31mb") == "a\\x9b31mb"  # C1 CSI
    assert sanitize("x\u202eexe.txt") == "x\\u202eexe.txt"  # right-to-left override
    assert sanitize("l1\u2028l2") == "l1\\u2028l2"


def test_bytes_and_undecodable_bytes() -> None:
    assert sanitize(b"ok\x1b\xff") == "ok\\x1b\\xff"
    assert sanitize("name\udcff".encode("utf-8", "surrogateescape")) == "name\\xff"
    assert sanitize(None) == ""


def test_multiline_keeps_newlines_and_tabs_only() -> None:
    assert sanitize("one\n\ttwo\r\x1b", multiline=True) == "one\n\ttwo\\r\\x1b"


def test_idempotent() -> None:
    once = sanitize(RAW)
    assert sanitize(once) == once


def test_status_messages_are_sanitised() -> None:
    err = status_error(SSH_FX_FAILURE, RAW, b"/x")
    assert "\x1b" not in err.strerror and "\r" not in err.strerror
    assert err.errno == errno.EIO


def test_extension_names_are_sanitised() -> None:
    def sstr(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    payload = (3).to_bytes(4, "big") + sstr(b"evil\x1b[2J@x") + sstr(b"1") + \
        sstr(b"statvfs@openssh.com") + sstr(b"2")
    _, ext = decode_version(payload)
    assert set(ext) == {"evil\\x1b[2J@x", "statvfs@openssh.com"}


def test_mount_error_line_is_sanitised() -> None:
    exc = MountError(errno.EIO, "host", f"server said {RAW}", "fix it")
    assert "\x1b" not in str(exc) and "\r" not in str(exc) and "\x07" not in str(exc)


def test_log_formatter_sanitises_messages_and_tracebacks() -> None:
    fmt = SafeFormatter("%(name)s: %(message)s")
    rec = logging.LogRecord("pysshfs.x", logging.WARNING, __file__, 1, "got %s", (RAW,), None)
    line = fmt.format(rec)
    assert line == "pysshfs.x: got " + sanitize(RAW)
    try:
        raise ValueError(RAW)
    except ValueError:
        rec = logging.LogRecord("p", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    text = fmt.format(rec)
    assert "\x1b" not in text and "\r" not in text and "\n" in text  # traceback lines kept


def test_prompts_and_messages_shown_to_the_user_are_sanitised(monkeypatch, capsys,
                                                              tmp_path) -> None:
    """keyboard-interactive names, instructions and prompts come from the server."""
    from pysshfs.ssh import prompt

    monkeypatch.setattr(prompt, "_open_tty", lambda: None)
    prompt.tell(f"Instructions:\n{RAW}")
    err = capsys.readouterr().err
    assert err == "Instructions:\n" + sanitize(RAW) + "\n"
    # SSH_ASKPASS gets the prompt as its argument: sanitised too
    seen = tmp_path / "seen"
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\nprintf %s \"$1\" > {seen}\necho answer\n")
    askpass.chmod(0o755)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    assert prompt.ask(f"Code {RAW}: ") == "answer"
    shown = seen.read_text()
    assert shown == f"Code {sanitize(RAW)}: "
    assert not any(c in shown for c in "\x1b\x07\r")
