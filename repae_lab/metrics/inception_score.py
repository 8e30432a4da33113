"""Inception Score (Salimans et al. 2016) from classifier logits: exp(E_x KL(p(y|x) || p(y))), over splits.

With Inception-V3 logits it is the IS of the papers; with the workshop evaluator's logits it is the same
statistic for that classifier's classes (the docs say which is which)."""
from __future__ import annotations

import torch


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` equal parts, as the ADM evaluator and torch-fidelity report it."""
    logits = torch.as_tensor(logits).double()
    if logits.ndim != 2 or len(logits) < splits:
        raise ValueError(f"need (N, classes) logits with N >= splits={splits}, got {tuple(logits.shape)}.")
    log_p = torch.log_softmax(logits, dim=1)
    scores = []
    for part in log_p.chunk(splits):
        log_marginal = torch.logsumexp(part, dim=0) - torch.log(torch.tensor(float(len(part)), dtype=torch.float64))
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(kl.exp())
    scores = torch.stack(scores)
    return scores.mean().item(), (scores.std(unbiased=False).item() if len(scores) > 1 else 0.0)
