"""The training layer: a run's state (state.py, networks.py), the step of every recipe (step.py, optim.py),
the loop that keeps the run directory (loop.py, checkpointing.py, snapshots.py, summary.py), its health
alarms, torchrun data parallelism and the analytic FLOP counts. Evaluation is handed in as a callback."""
