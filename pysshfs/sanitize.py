"""Making untrusted text safe to show: the one function every server string passes through
before it reaches a terminal, a log or syslog.

A server controls STATUS messages, extension names, keyboard-interactive prompts, banners,
file names and symlink targets. Written raw, an escape sequence in one of them can clear
the screen, retitle the window, rewrite the line before it (a forged "pysshfs: ..." line
after a carriage return) or split a syslog record in two. Here every control character
becomes visible text instead (ESC -> "\\x1b"), like OpenSSH's strnvis() does before
printing server strings; printable text, including any language's letters, is left alone.
"""

from __future__ import annotations

import logging
import re

# C0 controls, DEL, C1 controls (U+009B is a CSI for some terminals), the Unicode line
# and paragraph separators, and the bidirectional controls that make text display in a
# different order than it is (the "Trojan Source" trick); also the lone surrogates that
# surrogateescape decoding makes of bytes that are not UTF-8 (shown as the byte they were).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069\udc80-\udcff]")
_UNSAFE_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f"
                                "\u202a-\u202e\u2066-\u2069\udc80-\udcff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte surrogateescape could not decode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def sanitize(text: str | bytes | bytearray | memoryview | None, *,
             multiline: bool = False) -> str:
    """`text` with every control character escaped, fit for a terminal or a log line.

    Bytes are decoded as UTF-8, undecodable bytes escaped as \\xNN. `multiline` keeps
    newlines and tabs (keyboard-interactive instructions, tracebacks); otherwise the
    result is always one line. Backslashes are kept as they are, so the function is
    idempotent: sanitising twice changes nothing more.
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", "surrogateescape")
    pattern = _UNSAFE_KEEP_LINES if multiline else _UNSAFE
    if pattern.search(text) is None:  # the common case: nothing to do, no copy
        return text
    return pattern.sub(_escape, text)


class SafeFormatter(logging.Formatter):
    """A logging.Formatter that sanitises each message (one record, one line) and any
    traceback (kept multi-line), whoever logged it: our modules, paramiko, libfuse."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging API
        record.message = sanitize(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: object) -> str:  # noqa: N802 - logging API
        return sanitize(super().formatException(ei), multiline=True)  # type: ignore[arg-type]

    def formatStack(self, stack_info: str) -> str:  # noqa: N802 - logging API
        return sanitize(super().formatStack(stack_info), multiline=True)
