"""Checker of exercise 2: the REPA loss for one target encoder, the negative cosine similarity between the SiT's
projected tokens and the target encoder's tokens, averaged over tokens and then over the batch
(REPAE_FACTS section 1; repae_lab.losses.repa_loss for several encoders)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .verdict import Verdict, Wrong, as_tensor, call, finite, run_checks


def _cos(p, t, dim=-1):
    return (F.normalize(p, dim=dim) * F.normalize(t, dim=dim)).sum(-1)


# typical wrong answers: (key, function, message naming the mistake without giving the fix away)
MISTAKES: list[tuple[str, Callable, str]] = [
    ("unnormalised", lambda p, t: -(p * t).sum(-1).mean(),
     "your loss is a plain dot product: it changes when the tokens are rescaled, so the SiT could lower it by "
     "growing its tokens. REPA compares directions only; identical tokens must give -1 whatever their length."),
    ("sign", lambda p, t: _cos(p, t).mean(),
     "wrong sign: identical tokens give +1, your largest value, so minimising your loss would push the SiT's "
     "tokens away from the target's."),
    ("sum_over_tokens", lambda p, t: -_cos(p, t).sum(1).mean(),
     "wrong reduction: your loss grows with the number of tokens (a sum over tokens); with 16 tokens it is 16 "
     "times the value the paper reports, and the loss weights 0.5 / 1.5 would mean something else."),
    ("sum_over_everything", lambda p, t: -_cos(p, t).sum(),
     "wrong reduction: your loss is a sum over tokens and samples, so it grows with the batch size and the "
     "number of tokens instead of staying between -1 and 1."),
    ("mean_over_features", lambda p, t: -(F.normalize(p, dim=-1) * F.normalize(t, dim=-1)).mean(),
     "wrong reduction: you average the normalised product over the features too, so identical tokens give "
     "-1/D instead of -1: the cosine of two tokens adds up over their features."),
    ("normalised_over_tokens", lambda p, t: -_cos(p, t, dim=1).mean(),
     "you normalise along the token axis: each token's feature vector (the last axis) is what has to be unit "
     "length, so that every token is compared with its own target token."),
    ("offset", lambda p, t: (1 - _cos(p, t)).mean(),
     "your loss is the right one plus a constant: it trains the same, but the paper and the library report the "
     "negative cosine itself, so that perfect alignment reads -1. Drop the constant."),
    ("squared_distance", lambda p, t: (F.normalize(p, dim=-1) - F.normalize(t, dim=-1)).pow(2).sum(-1).mean(),
     "you compute the squared distance of the normalised tokens (2 - 2 cos): close, but scaled and shifted; the "
     "loss the paper reports is the negative cosine itself (-1 for perfect alignment)."),
]


def _battery():
    g = torch.Generator().manual_seed(7)
    p, t = torch.randn(3, 5, 7, generator=g), torch.randn(3, 5, 7, generator=g)
    norms = torch.rand(3, 5, 1, generator=g) * 20 + 0.1           # very different lengths per token
    cases = {
        "identical tokens": (p, p.clone()),
        "opposite tokens": (p, -p),
        "random tokens": (p, t),
        "the same tokens rescaled": (p * norms, t * 0.1),
        "16 tokens": (torch.randn(2, 16, 7, generator=g), torch.randn(2, 16, 7, generator=g)),
        "a batch of 9": (torch.randn(9, 5, 7, generator=g), torch.randn(9, 5, 7, generator=g)),
    }
    return cases


def reference(p, t):
    return -_cos(p.float(), t.float()).mean(1).mean()


def check_repa_loss(repa_loss: Callable) -> Verdict:
    """Run `repa_loss(projected, target)` ((N, T, D) each, returning a scalar) on token sets with known answers."""
    def body(right):
        if not callable(repa_loss):
            raise Wrong("pass your function itself: check_repa_loss(repa_loss).", "not_callable")
        values = {}
        for name, (p, t) in _battery().items():
            out = call(repa_loss, p.clone(), t.clone(), what="repa_loss", case=name)
            out = finite(as_tensor(out, "repa_loss", name), "repa_loss", name)
            if out.numel() != 1:
                raise Wrong(f"repa_loss returned shape {tuple(out.shape)} on the case '{name}': it must reduce to "
                            f"one number (averaged over tokens, then over the batch).", "not_scalar")
            values[name] = out.reshape(())
        cases = _battery()
        if all(torch.allclose(values[n].double(), reference(*cases[n]).double(), rtol=1e-4, atol=1e-5)
               for n in cases):
            p, t = cases["random tokens"]
            p = p.clone().requires_grad_(True)
            out = call(repa_loss, p, t, what="repa_loss", case="random tokens, with a gradient")
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                raise Wrong("the values are right but the loss has no gradient (an .item(), .numpy(), detach or "
                            "no_grad inside?): the SiT, its projector and the VAE learn through this loss.",
                            "no_grad")
            out.sum().backward()
            if p.grad is None or not torch.isfinite(p.grad).all():
                raise Wrong("the values are right but the gradient does not reach the projected tokens.", "no_grad")
            return ("right: -1 for identical tokens, +1 for opposite ones, the same value whatever the tokens' "
                    "lengths, the number of tokens or the batch size.")
        for key, wrong, message in MISTAKES:
            if all(torch.allclose(values[n].double(), wrong(*cases[n]).double(), rtol=1e-4, atol=1e-5)
                   for n in cases):
                raise Wrong(message, key)
        # no known mistake: say which property fails first
        ident = values["identical tokens"].item()
        if abs(ident + 1) > 1e-4:
            raise Wrong(f"identical tokens should give -1 (perfect alignment), yours gives {ident:.4g}.", "identical")
        right.append("identical tokens give -1")
        if abs(values["opposite tokens"].item() - 1) > 1e-4:
            raise Wrong(f"opposite tokens should give +1, yours gives {values['opposite tokens'].item():.4g}.",
                        "opposite")
        right.append("opposite tokens give +1")
        if abs(values["the same tokens rescaled"].item() - values["random tokens"].item()) > 1e-4:
            raise Wrong("your loss changes when the tokens are rescaled: it must depend on their directions only.",
                        "unnormalised")
        right.append("independent of the tokens' lengths")
        for name in ("16 tokens", "a batch of 9"):
            expected = reference(*cases[name]).item()
            if abs(values[name].item() - expected) > 1e-4:
                what = "number of tokens" if name == "16 tokens" else "batch size"
                raise Wrong(f"on the case '{name}' your loss gives {values[name].item():.4g} instead of "
                            f"{expected:.4g}: check how you reduce over the {what}.", "reduction")
        expected = reference(*cases["random tokens"]).item()
        raise Wrong(f"on random tokens your loss gives {values['random tokens'].item():.4g} instead of "
                    f"{expected:.4g}.", "value")
    return run_checks("repa_loss", body)
