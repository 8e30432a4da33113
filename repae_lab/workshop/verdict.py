"""What a checker answers (Verdict), and calling a learner's function so that nothing it does can crash the
notebook: an exception, a wrong type or shape, a NaN all become one sentence in the verdict."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class Verdict:
    """A checker's answer. `passed` is what CI reads; `message` is one or two sentences for the learner: what
    is right, or what is wrong and why (never the solution); `mistake` names a diagnosed typical mistake
    (e.g. "unnormalised", "sign") so the instructor's guide and the tests can refer to it."""
    exercise: str
    passed: bool
    message: str
    right: list[str] = field(default_factory=list)      # what already works, case by case
    mistake: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = f"{'✓' if self.passed else '✗'} {self.exercise}: {self.message}"
        if self.right and not self.passed:
            head += "\n  already right: " + "; ".join(self.right)
        return head

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, mark = ("#1b7f3b", "✓") if self.passed else ("#b3261e", "✗")
        right = ""
        if self.right and not self.passed:
            right = "<br><span style='color:#555'>already right: " + html.escape("; ".join(self.right)) + "</span>"
        return (f"<div style='border-left:4px solid {colour};padding:4px 10px'><b style='color:{colour}'>{mark} "
                f"{html.escape(self.exercise)}</b>: {html.escape(self.message)}{right}</div>")


class Wrong(Exception):
    """Raised inside a checker when the learner's answer fails; carries the verdict's message and mistake key."""

    def __init__(self, message: str, mistake: str | None = None):
        super().__init__(message)
        self.message, self.mistake = message, mistake


def short(err: BaseException, limit: int = 160) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def call(fn: Callable, *args, what: str = "your function", case: str = "") -> Any:
    """fn(*args), with any exception turned into a Wrong that says what happened and where."""
    where = f" on the case '{case}'" if case else ""
    try:
        return fn(*args)
    except NotImplementedError:
        raise Wrong(f"{what} is not written yet: replace `raise NotImplementedError` under # YOUR CODE HERE.",
                    "not_written") from None
    except Wrong:
        raise
    except Exception as err:   # the learner's bug, reported, never re-raised
        raise Wrong(f"{what} raised {short(err)}{where}. Fix that error first (run the cell on a small "
                    f"example to see the full traceback).", "raises") from None


def as_tensor(value: Any, what: str = "your function", case: str = "") -> torch.Tensor:
    """The learner's return value as a float tensor, or Wrong saying what it returned instead."""
    where = f" on the case '{case}'" if case else ""
    if isinstance(value, torch.Tensor):
        return value
    if value is None:
        raise Wrong(f"{what} returned None{where}: did you forget `return`?", "returns_none")
    if isinstance(value, (tuple, list)):
        raise Wrong(f"{what} returned a {type(value).__name__}{where}; return a single tensor.", "wrong_type")
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except Exception:
        raise Wrong(f"{what} returned a {type(value).__name__}{where}, not a tensor.", "wrong_type") from None


def finite(value: torch.Tensor, what: str = "your function", case: str = "") -> torch.Tensor:
    where = f" on the case '{case}'" if case else ""
    if not torch.isfinite(value.detach().float()).all():
        raise Wrong(f"{what} returned NaN or infinity{where}: look for a division by zero or a log of a "
                    f"non-positive number.", "not_finite")
    return value


def run_checks(exercise: str, body: Callable[[list[str]], str]) -> Verdict:
    """Run a checker's body; it appends what passes to `right` and returns the success message, or raises
    Wrong. Anything else that escapes is the checker's own failure, reported without a traceback too."""
    right: list[str] = []
    try:
        message = body(right)
    except Wrong as wrong:
        return Verdict(exercise, False, wrong.message, right, wrong.mistake)
    except Exception as err:   # e.g. the learner's function left a module in a state the checker cannot use
        return Verdict(exercise, False, f"the checker could not finish ({short(err)}); re-run the exercise cell "
                                        f"and then this one.", right, "checker_error")
    return Verdict(exercise, True, message, right)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    a, b = a.detach().double(), b.detach().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))
