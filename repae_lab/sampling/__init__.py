"""Sampling: pure samplers and time grids (samplers.py), classifier-free guidance with an interval
(guidance.py), the pipeline from a run's SiT and VAE to images (generate.py) and sample files (files.py)."""
from .files import load_npz, save_npz, to_adm_layout, write_samples
from .generate import (SamplingSpec, check_n, class_balanced_labels, generate_images, sample_loaded,
                       sample_to_files)
from .guidance import GuidedVelocity, check_interval, parse_interval, sit_velocity
from .samplers import (DEFAULT_STEPS, SAMPLERS, SamplingError, check_sampler, diffusion_coefficient, ode_times,
                       per_sample_generators, randn, sample_euler, sample_euler_maruyama, sample_heun,
                       score_from_velocity, sde_drift, sde_times, time_grid)

__all__ = ["DEFAULT_STEPS", "GuidedVelocity", "SAMPLERS", "SamplingError", "SamplingSpec", "check_interval",
           "check_n", "check_sampler", "class_balanced_labels", "diffusion_coefficient", "generate_images",
           "load_npz", "ode_times", "parse_interval", "per_sample_generators", "randn", "sample_euler",
           "sample_euler_maruyama", "sample_heun", "sample_loaded", "sample_to_files", "save_npz",
           "score_from_velocity", "sde_drift", "sde_times", "sit_velocity", "time_grid", "to_adm_layout",
           "write_samples"]
