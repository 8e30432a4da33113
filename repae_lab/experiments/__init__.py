"""Experiments made of several runs, and what they conclude: each trains its runs (through repae_lab.jobs),
reads them back, and returns tables, figures and verdicts.

    quickstart.py    repa, e2e-diffusion and repa-e side by side, probed, evaluated and reported (repae-lab quickstart)
    comparison.py    recipes side by side at equal steps: Table 1's analogue and FD against steps (notebooks 03, 05)
    two_stage.py     the E2E-VAE exported, then fresh SiTs trained on it and on the original VAE (notebook 07)
    sampler_grid.py  a run sampled over a grid of sampler settings, with their metrics (notebook 06)
    claims.py        the paper's claims at workshop scale: arms at several seeds, spreads, verdicts (benchmarks)
    claims_output.py what a claims benchmark wrote, read back with its plots and an FD figure (notebook 08)
    speedup_search.py  repa against repa-e with one knob changed at a time: where repa-e's speed-up is largest
"""
