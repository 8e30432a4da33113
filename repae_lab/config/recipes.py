"""The recipe table: every recipe's name and what its step trains (DESIGN.md recipe table).

This is the one place a recipe is defined. Config validation, the training step, optimizer building and the
FLOP count all read `RECIPES`; adding a recipe means adding one row here (and, if it needs a new kind of
update, that update in training/step.py).

A recipe fixes what reaches the VAE; the three repa-e ablations of the paper (Table 7) are config switches
that `routing` folds in, so a run's Routing is the recipe's row adjusted by stop_grad / latent_norm / vae_reg.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Routing:
    """Which updates a step takes and which losses reach which module."""
    trains_vae: bool            # updates 1 (VAE) and 2 (discriminator) happen at all
    uses_repa: bool             # the SiT and its projector get the REPA loss in update 3
    vae_gets_repa: bool         # the REPA loss reaches the VAE in update 1
    vae_gets_diffusion: bool    # the diffusion loss reaches the VAE in update 1 (no stop-gradient)
    vae_reg: bool               # L1 / perceptual / KL / GAN regularise the VAE in update 1
    bn_tracks_batches: bool     # the latent BatchNorm normalises with batch statistics in update 3


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str                # one line for help texts and tables
    trains_vae: bool
    uses_repa: bool
    vae_gets_repa: bool = False
    vae_gets_diffusion: bool = False
    ablations: bool = False     # stop_grad / latent_norm / vae_reg apply (the paper ablates repa-e only)

    def routing(self, cfg) -> Routing:
        """This recipe's routing for a config (the ablation switches folded in where they apply)."""
        if not self.trains_vae:
            # a frozen VAE: the BatchNorm is a fixed per-channel normalisation (train_ldm_only.py keeps it in eval)
            return Routing(trains_vae=False, uses_repa=self.uses_repa, vae_gets_repa=False,
                           vae_gets_diffusion=False, vae_reg=False, bn_tracks_batches=False)
        return Routing(trains_vae=True, uses_repa=self.uses_repa, vae_gets_repa=self.vae_gets_repa,
                       vae_gets_diffusion=self.vae_gets_diffusion or (self.ablations and not cfg.stop_grad),
                       vae_reg=cfg.vae_reg, bn_tracks_batches=cfg.latent_norm)


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("vanilla", "frozen VAE; SiT on the diffusion loss", trains_vae=False, uses_repa=False),
    Recipe("repa", "frozen VAE; SiT on diffusion + 0.5 REPA", trains_vae=False, uses_repa=True),
    Recipe("e2e-diffusion", "VAE tuned by the diffusion loss, no stop-gradient (the collapse the paper shows)",
           trains_vae=True, uses_repa=False, vae_gets_diffusion=True),
    Recipe("repa-e", "VAE tuned by 1.5 REPA + regularisation, diffusion loss stopped; SiT on diffusion + 0.5 REPA",
           trains_vae=True, uses_repa=True, vae_gets_repa=True, ablations=True),
    Recipe("on-frozen-e2e-vae", "an exported E2E-VAE, frozen; SiT on diffusion + 0.5 REPA",
           trains_vae=False, uses_repa=True),
)}


def routing(cfg) -> Routing:
    """The routing of cfg.recipe under cfg's ablation switches."""
    return RECIPES[cfg.recipe].routing(cfg)
