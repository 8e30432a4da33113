"""The one error type of the released-model loaders.

Every message is a single line that says what is wrong with the input and what to pass instead, so a CLI can
print it as it is and a notebook user reads the fix without a traceback.
"""
from __future__ import annotations


class ReleasedModelError(ValueError):
    """A released checkpoint, VAE, statistics file or run directory cannot be used as given."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Collapse whitespace and newlines, so messages from deeper libraries stay one line."""
    return " ".join(str(text).split())


def mismatch_message(what: str, problems: list[str], fix: str, shown: int = 8) -> str:
    """'<what> does not fit: <first problems>; ... and K more. <fix>' (keys and shapes named)."""
    listed = "; ".join(problems[:shown])
    more = f"; ... and {len(problems) - shown} more" if len(problems) > shown else ""
    return f"{what} does not fit ({len(problems)} differences: {listed}{more}). {fix}"
