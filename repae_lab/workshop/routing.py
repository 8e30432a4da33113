"""Checker of exercise 3: the gradient routing of the REPA-E step (REPAE_FACTS section 1, training/step.py).

The learner writes the losses of update 1 (the VAE) and update 3 (the SiT); the checker runs them, in that
order, on tiny real modules (parts.tiny_modules), calls backward() and reads which parameters got a gradient:

  update 1  the SiT frozen (no parameter gradient) and in eval mode (its latent BatchNorm uses the running
            statistics); the VAE's gradient is that of its regularisation + 1.5 x REPA, with no part of the
            diffusion loss in it;
  update 3  the latent detached (no VAE gradient); the SiT in train mode; its gradient that of
            diffusion + 0.5 x REPA, the projector included.

The VAE's gradient is decomposed into the gradients of the three candidate losses (regularisation, REPA,
diffusion) by least squares, so a mistake is named by what it adds or leaves out, not only detected.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch

from ..losses import diffusion_loss, interpolate, repa_loss
from ..models.modes import frozen_eval
from .parts import StepBatch, tiny_modules, vae_forward
from .verdict import Verdict, Wrong, as_tensor, call, finite, run_checks

VAE_REPA_WEIGHT, SIT_REPA_WEIGHT = 1.5, 0.5


def _flat(grads, params) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def _param_grads(module) -> torch.Tensor:
    params = list(module.parameters())
    return _flat([p.grad for p in params], params)


def _zero(*modules) -> None:
    for m in modules:
        for p in m.parameters():
            p.grad = None


def _restore(vae, sit, saved) -> None:
    vae.load_state_dict(saved[0])
    sit.load_state_dict(saved[1])
    for m in (vae, sit):
        m.train()
        m.requires_grad_(True)
    sit.pos_embed.requires_grad_(False)       # fixed sin-cos table, never trained
    _zero(vae, sit)


def _expected(vae, sit, batch: StepBatch) -> dict[str, torch.Tensor]:
    """The gradients the decomposition is made of: on the VAE, of its regularisation, of REPA and of the
    diffusion loss through the frozen eval-mode SiT (update 1); on the SiT, of diffusion and of REPA on the
    detached latent in train mode (update 3)."""
    def grad(loss, module):          # over every parameter (zeros for the fixed ones), as _param_grads reads them
        params = list(module.parameters())
        learns = [p for p in params if p.requires_grad]
        found = dict(zip(map(id, learns), torch.autograd.grad(loss, learns, retain_graph=True, allow_unused=True)))
        return _flat([found.get(id(p)) for p in params], params)

    sit_learns = {id(p): p.requires_grad for p in sit.parameters()}
    z, reg = vae_forward(vae, batch)
    with frozen_eval(sit):
        z_norm = sit.normalize_latent(z)
        velocity, projected = sit(interpolate(z_norm, batch.noise, batch.t), batch.t, batch.y)
        repa, diffusion = repa_loss(projected, [batch.targets]), diffusion_loss(velocity, z_norm, batch.noise)
    out = {"vae_reg": grad(reg, vae), "vae_repa": grad(repa, vae), "vae_diffusion": grad(diffusion, vae)}
    assert sit_learns == {id(p): p.requires_grad for p in sit.parameters()}
    sit.train()
    z_norm = sit.normalize_latent(z.detach())
    velocity, projected = sit(interpolate(z_norm, batch.noise, batch.t), batch.t, batch.y)
    out["sit_diffusion"] = grad(diffusion_loss(velocity, z_norm, batch.noise), sit)
    out["sit_repa"] = grad(repa_loss(projected, [batch.targets]), sit)
    return out


def _decompose(g: torch.Tensor, parts: list[torch.Tensor]) -> tuple[list[float], float]:
    """Least-squares weights of g over `parts`, and the relative residual."""
    a = torch.stack(parts, 1).double()
    coef = torch.linalg.lstsq(a, g.double().unsqueeze(1)).solution.squeeze(1)
    residual = (a @ coef - g.double()).norm() / g.double().norm().clamp_min(1e-30)
    return coef.tolist(), residual.item()


class _Recorder:
    """Records, at every SiT forward and latent-BatchNorm call, whether they ran in train mode and whether any
    SiT parameter could learn."""

    def __init__(self, sit):
        self.sit, self.calls = sit, []
        self.handles = [sit.register_forward_pre_hook(lambda m, a: self._seen("sit")),
                        sit.bn.register_forward_pre_hook(lambda m, a: self._seen("bn"))]

    def _seen(self, what):
        self.calls.append((what, self.sit.training if what == "sit" else self.sit.bn.training,
                           any(p.requires_grad for p in self.sit.parameters()), torch.is_grad_enabled()))

    def reset(self):
        self.calls = []

    def close(self):
        for h in self.handles:
            h.remove()


def _scalar_loss(value, what: str) -> torch.Tensor:
    loss = finite(as_tensor(value, what), what)
    if loss.numel() != 1:
        raise Wrong(f"{what} returned shape {tuple(loss.shape)}: return the loss as one number.", "not_scalar")
    return loss.reshape(())


def check_gradient_routing(vae_update_loss: Callable, sit_update_loss: Callable, *, seed: int = 0) -> Verdict:
    """Run `vae_update_loss(vae, sit, batch)` and then `sit_update_loss(sit, z, batch)` on tiny modules, call
    backward() on each and check which parameters got which gradient (see the module docstring)."""
    def body(right):
        if not callable(vae_update_loss) or not callable(sit_update_loss):
            raise Wrong("pass your two functions themselves: check_gradient_routing(vae_update_loss, "
                        "sit_update_loss).", "not_callable")
        vae, sit, batch = tiny_modules(seed)
        saved = (copy.deepcopy(vae.state_dict()), copy.deepcopy(sit.state_dict()))
        expected = _expected(vae, sit, batch)
        _restore(vae, sit, saved)
        recorder = _Recorder(sit)
        try:
            _check_vae_update(vae_update_loss, vae, sit, batch, saved, expected, recorder, right)
            _check_sit_update(sit_update_loss, vae, sit, batch, expected, recorder, right)
        finally:
            recorder.close()
        return ("the routing is REPA-E's: in the VAE update only the regularisation and 1.5 x REPA reach the VAE "
                "through a frozen, eval-mode SiT; in the SiT update the latent is detached and the SiT learns "
                "diffusion + 0.5 x REPA in train mode.")
    return run_checks("gradient_routing", body)


def _check_vae_update(fn, vae, sit, batch, saved, expected, recorder, right) -> None:
    what = "vae_update_loss"
    loss = _scalar_loss(call(fn, vae, sit, batch, what=what), what)
    calls = recorder.calls
    if not loss.requires_grad:
        raise Wrong(f"{what} returned a loss with no gradient at all (computed under torch.no_grad(), or "
                    f"detached): the VAE must learn from it.", "vae_no_grad")
    call(loss.backward, what="backward() of the VAE update's loss")
    sit_grad = _param_grads(sit)
    if sit_grad.abs().sum() > 0:
        raise Wrong("in the VAE update the SiT's parameters received gradients: the SiT must be frozen there, so "
                    "that this loss trains the VAE only (the SiT learns in its own update, from its own loss).",
                    "sit_not_frozen")
    if any(training for _, training, _, _ in calls):
        raise Wrong("the SiT ran in train mode during the VAE update: its latent BatchNorm normalised with the "
                    "batch's statistics (and moved its running statistics), and labels could be dropped. Run it "
                    "in eval mode there, as a fixed function the VAE's gradient passes through.", "sit_train_mode")
    if not torch.equal(sit.bn.running_mean, saved[1]["bn.running_mean"]):
        raise Wrong("the VAE update changed the latent BatchNorm's running statistics: the SiT must run in eval "
                    "mode there.", "sit_train_mode")
    right.append("VAE update: the SiT is frozen and in eval mode")
    g = _param_grads(vae)
    if g.abs().sum() == 0:
        raise Wrong("in the VAE update the VAE got no gradient: the loss must depend on the VAE's latent.",
                    "vae_no_grad")
    (a, b, c), residual = _decompose(g, [expected["vae_reg"], expected["vae_repa"], expected["vae_diffusion"]])
    if residual > 1e-3:
        raise Wrong("the VAE's gradient is not made of its regularisation, the REPA loss and the diffusion loss "
                    "at this batch's t and noise: use the batch's eps, t and noise, and the SiT as it is.",
                    "vae_gradient")
    if abs(c) > 0.02:
        raise Wrong("the diffusion loss reaches the VAE in its update: this is the e2e-diffusion recipe whose "
                    "latent collapses (the VAE makes the latent trivially easy to denoise). The VAE must learn "
                    "from REPA and its regularisation only.", "diffusion_reaches_vae")
    if abs(b) < 0.02:
        hint = (" (the SiT ran under torch.no_grad(), or z was detached, in the VAE update)"
                if any(not grad_on for *_, grad_on in calls) else " (is z detached before the SiT in this update?)")
        raise Wrong(f"the REPA loss does not reach the VAE{hint}: the alignment loss is what tunes the VAE in "
                    f"REPA-E; only the SiT's parameters are frozen, the path through it to z stays open.",
                    "no_repa_in_vae")
    if abs(a) < 0.02:
        raise Wrong("the VAE's regularisation (the `reg` that vae_forward returns) is missing from its loss: "
                    "without it nothing keeps the VAE reconstructing its images.", "no_reg")
    if abs(b - VAE_REPA_WEIGHT) > 0.02 or abs(a - 1) > 0.02:
        raise Wrong(f"the right losses reach the VAE but with other weights (REPA x {b:.2f}, regularisation "
                    f"x {a:.2f}); the VAE side weights REPA by {VAE_REPA_WEIGHT} and the regularisation by 1.",
                    "vae_weights")
    right.append("VAE update: regularisation + 1.5 x REPA reach the VAE, no diffusion loss")


def _check_sit_update(fn, vae, sit, batch, expected, recorder, right) -> None:
    what = "sit_update_loss"
    _zero(vae, sit)
    z, _ = vae_forward(vae, batch)                # the latent of update 1, still attached to the VAE's graph
    recorder.reset()
    loss = _scalar_loss(call(fn, sit, z, batch, what=what), what)
    calls = recorder.calls
    frozen = bool(calls) and not any(learns for _, _, learns, _ in calls)
    if not loss.requires_grad:
        if frozen:
            raise Wrong("the SiT is still frozen when its own update runs (the VAE update froze it and nothing "
                        "unfroze it): freeze it only for the VAE update, e.g. with a context manager that "
                        "restores it.", "sit_still_frozen")
        raise Wrong(f"{what} returned a loss with no gradient (computed under torch.no_grad()?): the SiT must "
                    f"learn from it.", "sit_no_grad")
    call(loss.backward, what="backward() of the SiT update's loss")
    if _param_grads(vae).abs().sum() > 0:
        raise Wrong("the SiT update's loss reaches the VAE: the latent is not detached, so the diffusion loss "
                    "flows back into the VAE (the stop-gradient is what keeps the latent from collapsing).",
                    "latent_not_detached")
    right.append("SiT update: nothing reaches the VAE")
    g = _param_grads(sit)
    if g.abs().sum() == 0:
        if frozen:
            raise Wrong("the SiT got no gradient in its own update: it is still frozen from the VAE update. Freeze "
                        "it only for the VAE update, e.g. with a context manager that restores it.",
                        "sit_still_frozen")
        raise Wrong("the SiT got no gradient in its own update: its loss must come from the SiT's output.",
                    "sit_no_grad")
    if any(not training for kind, training, _, _ in calls if kind == "bn"):
        raise Wrong("the SiT ran in eval mode in its own update: there the latent BatchNorm normalises with the "
                    "batch's statistics and tracks them (train mode); eval mode belongs to the VAE update.",
                    "sit_eval_mode")
    (alpha, beta), residual = _decompose(g, [expected["sit_diffusion"], expected["sit_repa"]])
    projector = torch.cat([p.grad.flatten() for p in sit.projectors.parameters() if p.grad is not None] or
                          [torch.zeros(1)])
    if residual > 1e-3:
        raise Wrong("the SiT's gradient is not made of the diffusion and REPA losses on this batch: use the "
                    "given z (detached), the batch's t and noise, and the target tokens.", "sit_gradient")
    if abs(beta) < 0.01 or projector.abs().sum() == 0:
        raise Wrong("the REPA loss is missing from the SiT update: the projector gets no gradient, so the SiT's "
                    "tokens never learn to align with the target encoder.", "no_repa_in_sit")
    if abs(alpha) < 0.01:
        raise Wrong("the diffusion loss is missing from the SiT update: the SiT would never learn to denoise.",
                    "no_diffusion_in_sit")
    if abs(beta - SIT_REPA_WEIGHT) > 0.01 or abs(alpha - 1) > 0.01:
        raise Wrong(f"the SiT learns from the right losses but with other weights (diffusion x {alpha:.2f}, REPA "
                    f"x {beta:.2f}); the SiT side weights the diffusion loss by 1 and REPA by {SIT_REPA_WEIGHT}.",
                    "sit_weights")
    right.append("SiT update: diffusion + 0.5 x REPA in train mode")


# ---------------------------------------------------------------------------------------------------------
# the picture after the exercise: which part of which network learns in which update

def _group(name: str, module_kind: str, alignment_depth: int) -> str:
    if module_kind == "vae":
        return "VAE decoder" if name.startswith(("decoder", "post_quant")) else "VAE encoder"
    if name.startswith("projectors"):
        return "REPA projector"
    if name.startswith("blocks."):
        return "SiT blocks 1-a" if int(name.split(".")[1]) < alignment_depth else "SiT blocks after a"
    return "SiT embeddings + head"


GROUPS = ("VAE encoder", "VAE decoder", "SiT embeddings + head", "SiT blocks 1-a", "SiT blocks after a",
          "REPA projector")


def routing_gradients(vae_update_loss: Callable, sit_update_loss: Callable, *, seed: int = 0) -> dict[str, dict[str, float]]:
    """{update: {part: gradient norm}} of the two functions on the tiny modules: which part of which network
    learns in which update (update 1: the VAE, update 3: the SiT)."""
    vae, sit, batch = tiny_modules(seed)
    out = {}
    for update in ("update 1 (VAE)", "update 3 (SiT)"):
        _zero(vae, sit)
        if update.startswith("update 1"):
            loss = vae_update_loss(vae, sit, batch)
        else:
            loss = sit_update_loss(sit, vae_forward(vae, batch)[0], batch)
        loss.backward()
        norms = dict.fromkeys(GROUPS, 0.0)
        for kind, module in (("vae", vae), ("sit", sit)):
            for name, p in module.named_parameters():
                if p.grad is not None:
                    norms[_group(name, kind, sit.cfg.alignment_depth)] += p.grad.pow(2).sum().item()
        out[update] = {k: v ** 0.5 for k, v in norms.items()}
    return out


def routing_figure(vae_update_loss: Callable, sit_update_loss: Callable):
    """A heat map: rows the updates, columns the parts of the networks, colour the gradient's norm (0 = frozen)."""
    import plotly.graph_objects as go     # the notebook extra: the checkers themselves run without it

    grads = routing_gradients(vae_update_loss, sit_update_loss)
    rows = list(grads)
    z = [[grads[r][g] for g in GROUPS] for r in rows]
    text = [[f"{v:.2g}" if v > 0 else "no gradient" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=[[min(v, 1e9) ** 0.25 for v in row] for row in z], x=list(GROUPS), y=rows,
                               text=text, texttemplate="%{text}", colorscale="Blues", showscale=False,
                               hovertemplate="%{y}, %{x}: %{text}<extra></extra>"))
    fig.update_layout(title="gradient norm per part (a = alignment depth)", height=260,
                      margin=dict(t=50, l=120, r=20, b=40), yaxis=dict(autorange="reversed"))
    return fig
