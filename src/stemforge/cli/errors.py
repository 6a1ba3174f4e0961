"""Errors at the edge of the program, and how they are shown to a person (one line)."""
from __future__ import annotations


class UserError(Exception):
    """An error caused by the input or options; printed as one line."""


# Exceptions whose message is written for a person: shown as is, without the exception type.
_EXPECTED = ("UserError", "AudioError", "CheckpointError", "ModelResolutionError", "ModelNotFoundError",
             "ChecksumError", "BagError", "OutputPathError", "HubError", "ValueError", "OSError")


def describe(error: BaseException) -> str:
    """A one-line description of ``error`` for a person."""
    lines = str(error).strip().splitlines()
    message = lines[0] if lines else ""
    if any(klass.__name__ in _EXPECTED for klass in type(error).__mro__) and message:
        return message
    return f"{type(error).__name__}: {message} (run with -v for details)"
