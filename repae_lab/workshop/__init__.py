"""The REPA-E workshop kit (notebooks/workshop/, docs/workshop.md): exercises' checkers, reference solutions on
request, the kit's runs and the pictures its notebooks show.

It sits above the experiments: it may use anything in the library, and nothing in the library imports it but
the commands (`repae-lab workshop prepare / status`, repae_lab/commands/workshop.py).

    check_interpolation(interpolate, velocity_target)   exercise 1
    check_repa_loss(repa_loss)                          exercise 2
    check_gradient_routing(vae_update_loss, sit_update_loss)   exercise 3
    check_collapse_reading(collapsed)                   exercise 4
    show_solution("repa_loss")                          prints a reference solution, only when asked

Every checker returns a Verdict (shown as the cell's output) and never raises because of the learner's code.
"""
from .collapse import check_collapse_reading, collapse_table, reading
from .interpolant import check_interpolation
from .kit import Kit, default_kit_dir, prepare
from .live import LiveView
from .parts import StepBatch, tiny_modules, vae_forward
from .repa import check_repa_loss
from .routing import check_gradient_routing, routing_figure, routing_gradients
from .runs import KIT_RUNS, describe
from .solutions import show_solution, solution
from .verdict import Verdict

__all__ = [
    "check_interpolation", "check_repa_loss", "check_gradient_routing", "check_collapse_reading",
    "show_solution", "solution", "Verdict", "Kit", "prepare", "default_kit_dir", "KIT_RUNS", "describe",
    "LiveView", "StepBatch", "vae_forward", "tiny_modules", "routing_figure", "routing_gradients",
    "collapse_table", "reading",
]
