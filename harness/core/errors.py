"""Errors the CLI turns into one line and exit code 2."""

import unicodedata

UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}  # control, format, line/paragraph separator, surrogate


def printable(text: str) -> str:
    """``text`` with control, format and line-separator characters escaped (``\\n``,
    ``\\x1b``, ``\\u202e``), so user-controlled strings cannot split an error line or drive
    the terminal."""
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) in UNSAFE else c
        for c in text
    )


class HarnessError(Exception):
    """A user-facing error: bad input, missing data, an unknown plugin."""


class SuiteError(HarnessError):
    """A problem in a suite file, located by file and dotted field path."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.message, self.file, self.field = message, file, field
        super().__init__(message)

    def __str__(self) -> str:
        where = ": ".join(p for p in (self.file, self.field) if p)
        return printable(f"{where}: {self.message}" if where else self.message)


class PluginError(HarnessError):
    """A plugin failed to load or registered a bad or duplicate part."""


class ContractError(AssertionError):
    """A plugin part broke a rule of its kind's contract (raised by the conformance kit,
    :mod:`harness.testing`)."""

    def __init__(self, label: str, rule: str):
        super().__init__(f"{label}: {rule}")
