"""The errors a run directory can raise; each message says what is wrong and what to do."""
from __future__ import annotations


class RunError(RuntimeError):
    """A problem with a run directory or a run's set-up; the message says what to do."""


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used; the message says why and what to do."""


class ArchitectureMismatch(CheckpointError):
    """A readable checkpoint whose tensors do not fit the model built from the config (another size, patch,
    channels, classes...): falling back to an older checkpoint of the same run would not help."""
