"""TrainingMonitor, the first name of the training dashboard: kept as an alias of TrainingDashboard
(widgets/dashboard.py), which replaced its background-thread refresh with the training loop's callback and a
timer on the kernel's event loop. Its live figure is now `.fig` (`.figure()` is the static export)."""
from __future__ import annotations

from .dashboard import StopTraining, TrainingDashboard

TrainingMonitor = TrainingDashboard

__all__ = ["StopTraining", "TrainingDashboard", "TrainingMonitor"]
