"""ipywidgets + plotly views over repae_lab run directories (DESIGN.md: the UI layer; the library never
imports it). They read run directories and the probe cache and call library functions (repae_lab.views.*);
no callback trains or computes probes. Each is two lines in a notebook, and each has a static export,
`.figure()` (a plain plotly figure) and `.to_html(path)` (a page that works offline). docs/widgets.md.

    from widgets import LatentExplorer, TrainingDashboard, SamplerPlayground, ReconstructionGallery
    LatentExplorer(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])
    TrainingDashboard("runs/workshop-repa-e")              # live; .train(cfg) trains here, with a Stop button
    SamplerPlayground("runs/workshop-repa-e")
    ReconstructionGallery(["runs/workshop-repa-e", "runs/workshop-e2e-diffusion"])
"""
from .dashboard import StopTraining, TrainingDashboard
from .explorer import LatentExplorer
from .gallery import ReconstructionGallery
from .monitor import TrainingMonitor
from .playground import SamplerPlayground

__all__ = ["LatentExplorer", "ReconstructionGallery", "SamplerPlayground", "StopTraining", "TrainingDashboard",
           "TrainingMonitor"]
