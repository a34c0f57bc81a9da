"""Asking the user: passwords, passphrases and host-key questions, as ssh asks them.

On the controlling terminal (/dev/tty, never stdout, so scripts' pipes stay clean), or through
SSH_ASKPASS when there is no terminal (or SSH_ASKPASS_REQUIRE says so). Nothing asked here is
ever logged. Every text shown is sanitised first: a server writes the keyboard-interactive
prompts and instructions, and must not be able to drive the terminal with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import termios

from pysshfs.sanitize import sanitize

log = logging.getLogger(__name__)


class NoWayToAsk(Exception):
    """Neither a terminal nor SSH_ASKPASS can be used."""


def _open_tty() -> int | None:
    try:
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None


def have_tty() -> bool:
    fd = _open_tty()
    if fd is None:
        return False
    os.close(fd)
    return True


def _askpass_program() -> str | None:
    program = os.environ.get("SSH_ASKPASS")
    return program or None


def _askpass_mode() -> str:
    """'never', 'prefer', 'force' or '' (default: askpass only without a terminal)."""
    return os.environ.get("SSH_ASKPASS_REQUIRE", "").lower()


def _read_tty_line(fd: int, prompt: str, echo: bool) -> str:
    with open(fd, "r+b", buffering=0, closefd=False) as tty:
        old = None
        if not echo:
            with contextlib.suppress(termios.error):
                old = termios.tcgetattr(fd)
                new = termios.tcgetattr(fd)
                new[3] &= ~termios.ECHO
                termios.tcsetattr(fd, termios.TCSAFLUSH, new)
        try:
            tty.write(prompt.encode())
            line = b""
            while not line.endswith(b"\n"):
                chunk = tty.read(1)
                if not chunk:
                    break
                line += chunk
        finally:
            if old is not None:
                termios.tcsetattr(fd, termios.TCSAFLUSH, old)
                tty.write(b"\n")
    return line.decode(errors="replace").rstrip("\r\n")


def _askpass(program: str, prompt: str, echo: bool, confirm: bool = False) -> str:
    env = dict(os.environ)
    if confirm:
        env["SSH_ASKPASS_PROMPT"] = "confirm"
    try:
        result = subprocess.run([program, prompt], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, env=env, check=False)
    except OSError as e:
        raise NoWayToAsk(f"SSH_ASKPASS program {program} failed: {e.strerror}") from None
    answer = result.stdout.decode(errors="replace").rstrip("\r\n")
    if confirm:
        # A confirm dialog answers with its exit status; a text one may also print "yes".
        return answer or ("yes" if result.returncode == 0 else "no")
    if result.returncode != 0:
        raise NoWayToAsk(f"SSH_ASKPASS program {program} exited {result.returncode}")
    return answer


def ask(prompt: str, *, echo: bool = False, confirm: bool = False) -> str:
    """Ask once, the way ssh would here; raises NoWayToAsk when nothing can be asked.

    `confirm` marks a yes/no question (SSH_ASKPASS_PROMPT=confirm for askpass programs)."""
    prompt = sanitize(prompt, multiline=True)
    mode = _askpass_mode()
    program = _askpass_program()
    if program and mode in ("force", "prefer"):
        return _askpass(program, prompt, echo, confirm)
    if mode != "force":
        fd = _open_tty()
        if fd is not None:
            try:
                return _read_tty_line(fd, prompt, echo)
            finally:
                os.close(fd)
    if program and mode != "never":
        return _askpass(program, prompt, echo, confirm)
    raise NoWayToAsk("no terminal to ask on and SSH_ASKPASS is not set")


def can_ask() -> bool:
    mode = _askpass_mode()
    if _askpass_program() and mode != "never":
        return True
    return mode != "force" and have_tty()


def tell(text: str) -> None:
    """Show a line to the user on the terminal (stderr when there is none)."""
    text = sanitize(text, multiline=True)
    fd = _open_tty()
    if fd is None:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
        return
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def read_stdin_line() -> str:
    """One line from stdin, without its newline: sshfs's -o password_stdin."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(0, 1)  # fd 0 itself: byte by byte, so nothing after it is eaten
        except OSError as e:
            raise NoWayToAsk(f"cannot read the password from stdin: {e.strerror}") from None
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").rstrip("\r\n")
