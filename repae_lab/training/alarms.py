"""Alarms on a training run's health, checked on every step's metrics.

Users report REPA-E runs that collapse late; each failure mode has a signature in the metrics:
  nonfinite        a loss or gradient norm is NaN or Inf (at once)
  grad_collapse    a module's gradient norm stays about zero (the module stopped learning)
  gan_collapse     the discriminator's hinge loss stays about zero (it wins outright; the GAN term goes wild)
  latent_collapse  the latent's spatial variance falls below a fraction of its starting value (REPA-E Table 1's
                   failure: 17.06 -> 0.02 under naive end-to-end training)
  fp16_overflow    fp16's gradient scaler skips an update step after step (a few skips at the start are normal:
                   the scaler lowers its scale until gradients fit; skips that go on mean the gradients overflow)
The sustained ones must hold for `alarm_patience` consecutive steps, so a single odd batch does not fire.
What happens next is the run's `alarm_policy`: warn, stop, or roll back to the last good checkpoint with a
lower learning rate.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from .summary import SKIP_PREFIX


@dataclass(frozen=True)
class Alarm:
    kind: str
    step: int
    message: str

    def record(self, policy: str) -> dict:
        return {"step": self.step, "event": "alarm", "alarm": self.kind, "message": self.message, "policy": policy}


class AlarmMonitor:
    def __init__(self, cfg):
        self.cfg = cfg
        self.streak: dict[str, int] = defaultdict(int)
        self.reference_spatial_var: float | None = None

    def reset(self) -> None:
        self.streak.clear()

    def _sustained(self, kind: str, condition: bool, patience: int | None = None) -> bool:
        self.streak[kind] = self.streak[kind] + 1 if condition else 0
        return self.streak[kind] == (patience or self.cfg.alarm_patience)   # fire once per streak

    def check(self, step: int, metrics: dict[str, float]) -> list[Alarm]:
        cfg, alarms = self.cfg, []
        bad = sorted(k for k, v in metrics.items() if k.startswith(("loss/", "grad_norm/")) and not math.isfinite(v))
        if self._sustained("nonfinite", bool(bad), patience=1):
            alarms.append(Alarm("nonfinite", step, f"non-finite values at step {step}: {', '.join(bad)}"))
        skipped = sorted(k for k, v in metrics.items() if k.startswith(SKIP_PREFIX) and v)
        if self._sustained("fp16_overflow", bool(skipped)):
            alarms.append(Alarm("fp16_overflow", step, f"fp16's gradient scaler skipped {', '.join(skipped)} for "
                                                       f"{cfg.alarm_patience} steps in a row: the gradients overflow "
                                                       f"fp16 (try mixed_precision=bf16)"))
        for key in ("grad_norm/sit", "grad_norm/vae"):
            if key in metrics and self._sustained(key, metrics[key] < cfg.alarm_grad_norm_min):
                alarms.append(Alarm("grad_collapse", step, f"{key} below {cfg.alarm_grad_norm_min:g} for "
                                                           f"{cfg.alarm_patience} steps (now {metrics[key]:.3g})"))
        if "loss/disc" in metrics and self._sustained("disc", metrics["loss/disc"] < cfg.alarm_disc_loss_min):
            alarms.append(Alarm("gan_collapse", step, f"discriminator hinge loss below {cfg.alarm_disc_loss_min:g} for "
                                                      f"{cfg.alarm_patience} steps: it separates real from reconstructed "
                                                      f"outright (now {metrics['loss/disc']:.3g})"))
        sv = metrics.get("latent/spatial_var")
        if sv is not None and math.isfinite(sv):
            if self.reference_spatial_var is None:
                self.reference_spatial_var = sv
            floor = cfg.alarm_spatial_var_ratio * self.reference_spatial_var
            if self._sustained("latent", sv < floor):
                alarms.append(Alarm("latent_collapse", step, f"latent spatial variance {sv:.3g} below "
                                                             f"{cfg.alarm_spatial_var_ratio:g} x its starting value "
                                                             f"{self.reference_spatial_var:.3g} for {cfg.alarm_patience} steps"))
        return alarms
