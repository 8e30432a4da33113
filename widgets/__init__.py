"""ipywidgets + plotly views over repae_lab run directories (DESIGN.md: the UI layer; the library never
imports it). They read run directories and the probe cache and call library functions; no callback
trains or computes anything heavy.

    from widgets import LatentExplorer, TrainingMonitor
    LatentExplorer(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])
    TrainingMonitor("runs/workshop-repa-e").start(every=10)
"""
from .explorer import LatentExplorer
from .monitor import TrainingMonitor

__all__ = ["LatentExplorer", "TrainingMonitor"]
