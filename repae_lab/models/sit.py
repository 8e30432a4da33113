"""SiT: a DiT-style adaLN-Zero transformer for flow matching, with REPA projectors
and the REPA-E latent BatchNorm (arXiv 2504.10483).

Design follows DiT/SiT/REPA so that released REPA / REPA-E checkpoints load with
``strict=True`` (module and parameter names are part of the contract, see tests):

* t in [0, 1] is embedded directly (no x1000 rescaling as in DiT's integer steps).
* Class conditioning has an extra "null" row ``num_classes`` for classifier-free guidance.
* After block ``alignment_depth`` the hidden tokens go through one projector per target
  encoder (REPA alignment loss is computed outside this module): REPA's MLP on each token, or
  iREPA's convolution on the token grid (``projector_type="conv"``, arXiv 2512.10794).
* ``bn`` normalises clean VAE latents before noising (REPA-E); it has no affine params so
  the diffusion model cannot "learn away" the latent scale, and gradients flow to the VAE.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.utils.checkpoint
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..config.sizes import SIT_SIZES

__all__ = ["SiTConfig", "SIT_SIZES", "sit_config", "SiT"]


@dataclass
class SiTConfig:
    input_size: int = 32  # latent spatial size (H == W)
    patch_size: int = 2  # 1, 2, 4 or 8
    in_channels: int = 4  # latent channels
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000  # the null (CFG) class is row num_classes of the label table
    class_dropout_prob: float = 0.1
    alignment_depth: int = 8  # REPA reads the hidden state after this many blocks (1-based)
    projector_dim: int = 2048
    z_dims: tuple[int, ...] = (768,)  # one projector per target encoder, output width each
    projector_type: str = "mlp"  # mlp (REPA) | conv (iREPA: one k x k convolution on the token grid)
    projector_kernel: int = 3  # the conv projector's kernel side (odd, so the grid keeps its size)
    bn_momentum: float = 0.1
    qk_norm: bool = False  # per-head LayerNorm on q and k (timm-style keys q_norm/k_norm)

    @property
    def num_patches(self) -> int:
        return (self.input_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        """JSON-ready (RUN/sit_config.json)."""
        d = asdict(self)
        d["z_dims"] = list(self.z_dims)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "SiTConfig":
        """From to_dict's output; `encoder_depth`, the official code's name for alignment_depth, is accepted."""
        data = dict(data)
        if "encoder_depth" in data:
            data.setdefault("alignment_depth", data.pop("encoder_depth"))
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown SiT config keys {sorted(unknown)}; valid keys: {[f.name for f in fields(cls)]}")
        data["z_dims"] = tuple(int(z) for z in data.get("z_dims", (768,)))
        return cls(**data)


def sit_config(size: str, **overrides) -> SiTConfig:
    """Config for a named size (a key of SIT_SIZES: S, B, L, XL, W-tiny, W), fields overridable."""
    if size not in SIT_SIZES:
        raise ValueError(f"unknown SiT size {size!r}; valid sizes: {', '.join(SIT_SIZES)}")
    cfg = replace(SiTConfig(**SIT_SIZES[size]), **overrides)
    if "z_dims" in overrides:  # accept lists from YAML/CLI but keep the declared tuple type
        cfg.z_dims = tuple(int(z) for z in cfg.z_dims)
    return cfg


# --------------------------------------------------------------------------- embeddings
def sincos_pos_embed_2d(dim: int, grid_size: int) -> Tensor:
    """(grid_size**2, dim) fixed sin-cos embedding, same layout as MAE/DiT's numpy version:
    tokens row-major over (row, col); first half of channels encodes the column index,
    second half the row index; each half is [sin, cos]."""
    assert dim % 4 == 0, "hidden_size must be divisible by 4 for the 2-D sin-cos embedding"
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def emb_1d(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega[None]  # (T, dim/4)
        return torch.cat([out.sin(), out.cos()], dim=1)  # (T, dim/2)

    return torch.cat([emb_1d(cols), emb_1d(rows)], dim=1).float()  # (T, dim)


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens (state-dict keys proj.weight / proj.bias, as timm)."""

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N,C,H,W) -> (N, T, D)


class TimestepEmbedder(nn.Module):
    """Continuous t -> 256 sinusoidal frequencies -> MLP."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    @staticmethod
    def sinusoid(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]  # (N, half)
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # DiT order: [cos, sin]
        if dim % 2:
            emb = F.pad(emb, (0, 1))
        return emb  # (N, dim)

    def forward(self, t: Tensor) -> Tensor:
        freq = self.sinusoid(t, self.freq_dim).to(self.mlp[0].weight.dtype)
        return self.mlp(freq)  # (N, D)


class LabelEmbedder(nn.Module):
    """Class labels -> vectors; row ``num_classes`` is the null label used for CFG."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float):
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, dim)

    def drop_labels(self, y: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        # An explicit force mask is deterministic (used to build the unconditional half of
        # a CFG batch); random dropout only happens while training.
        if force_drop_ids is not None:
            drop = force_drop_ids.to(device=y.device).bool()
        elif self.training and self.dropout_prob > 0:
            drop = torch.rand(y.shape[0], device=y.device) < self.dropout_prob
        else:
            return y
        return torch.where(drop, torch.full_like(y, self.num_classes), y)

    def forward(self, y: Tensor, force_drop_ids: Tensor | None = None) -> Tensor:
        return self.embedding_table(self.drop_labels(y, force_drop_ids))  # (N, D)


# --------------------------------------------------------------------------- blocks
def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)  # per-sample affine over tokens


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        # Only register norms when asked, so that qk_norm=False adds no state-dict keys.
        if qk_norm:
            self.q_norm = nn.LayerNorm(self.head_dim)
            self.k_norm = nn.LayerNorm(self.head_dim)
        else:
            self.q_norm = self.k_norm = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (N, heads, T, head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        x = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, head_dim)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))  # (N, T, D)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SiTBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorms are modulated by the conditioning
    (adaLN-Zero: gates start at zero so every block is the identity at init)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (N, T, D)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (N, T, D)
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (N, T, p*p*C)


class ConvProjector(nn.Module):
    """iREPA's projector (arXiv 2512.10794): one convolution over the token grid in place of the per-token MLP,
    so that each projected token is made from its neighbours too and the alignment transfers spatial structure.
    Its weights keep PyTorch's conv init: SiT.initialize_weights re-initialises Linears only, as iREPA's does."""

    def __init__(self, dim: int, z_dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, z_dim, kernel, padding=kernel // 2)   # same-size output for an odd kernel

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        side = math.isqrt(t)                      # the SiT's token grid is square (input_size // patch_size)
        grid = x.transpose(1, 2).reshape(n, d, side, side)                  # (N, D, h, w), row-major tokens
        return self.conv(grid).flatten(2).transpose(1, 2)                   # (N, T, z_dim)


def build_projector(dim: int, projector_dim: int, z_dim: int, kind: str = "mlp", kernel: int = 3) -> nn.Module:
    if kind == "conv":
        return ConvProjector(dim, z_dim, kernel)
    if kind != "mlp":
        raise ValueError(f"projector_type must be mlp or conv, got '{kind}'")
    # Keys .0/.2/.4 match REPA's projector MLPs.
    return nn.Sequential(
        nn.Linear(dim, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, projector_dim), nn.SiLU(),
        nn.Linear(projector_dim, z_dim),
    )


# --------------------------------------------------------------------------- model
class SiT(nn.Module):
    def __init__(self, cfg: SiTConfig):
        super().__init__()
        if cfg.input_size % cfg.patch_size:
            raise ValueError(f"input_size {cfg.input_size} not divisible by patch_size {cfg.patch_size}")
        if not 1 <= cfg.alignment_depth <= cfg.depth:
            raise ValueError(f"alignment_depth must be in [1, {cfg.depth}], got {cfg.alignment_depth}")
        self.cfg = cfg
        d = cfg.hidden_size
        self.x_embedder = PatchEmbed(cfg.patch_size, cfg.in_channels, d)
        self.t_embedder = TimestepEmbedder(d)
        self.y_embedder = LabelEmbedder(cfg.num_classes, d, cfg.class_dropout_prob)
        # Fixed (non-learned) but kept as a Parameter because checkpoints store it under this name.
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, d), requires_grad=False)
        self.blocks = nn.ModuleList(
            [SiTBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth)]
        )
        self.projectors = nn.ModuleList([build_projector(d, cfg.projector_dim, z, cfg.projector_type,
                                                         cfg.projector_kernel) for z in cfg.z_dims])
        self.final_layer = FinalLayer(d, cfg.patch_size, cfg.in_channels)
        # REPA-E latent normalisation: no affine (see module docstring); eps=1e-4 as in REPA-E.
        self.bn = nn.BatchNorm2d(cfg.in_channels, eps=1e-4, momentum=cfg.bn_momentum, affine=False,
                                 track_running_stats=True)
        self.activation_checkpointing = False   # a runtime switch (no weights); see forward
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT init: xavier linears, fixed sin-cos pos embed, zeroed adaLN outputs and head."""
        def _basic_init(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        # every Linear, the REPA projectors included (as REPA's and REPA-E's initialize_weights do)
        self.apply(_basic_init)

        grid = int(math.isqrt(self.cfg.num_patches))
        self.pos_embed.data.copy_(sincos_pos_embed_2d(self.cfg.hidden_size, grid).unsqueeze(0))
        # Treat the patch conv like a Linear over the flattened (C*p*p) input.
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every residual branch and the output start at exactly zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(N, T, p*p*C) -> (N, C, H, W); channel-last within each patch, as DiT."""
        p, c = self.cfg.patch_size, self.cfg.in_channels
        h = w = self.cfg.input_size // p
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x: Tensor, t: Tensor, y: Tensor, *, stop_at_depth: int | None = None,
                force_drop_ids: Tensor | None = None, project: bool = True) -> tuple[Tensor | None, list[Tensor]]:
        """x: (N, C, H, W) noised, already-normalised latent; t: (N,) in [0, 1]; y: (N,) long.

        Returns ``(velocity (N, C, H, W), [projected tokens (N, T, z_dim) per projector])``.
        With ``stop_at_depth`` (>= alignment_depth) the pass stops after that block and the
        velocity is ``None`` -- the cheap truncated pass REPA-E uses to push the alignment
        loss into the VAE. Labels are dropped to the null class at random only in training
        mode, or deterministically where ``force_drop_ids`` is true. ``project=False`` skips the
        projectors (the list comes back empty): sampling needs only the velocity, and the
        projectors cost a tenth of a workshop SiT's forward pass.
        """
        cfg = self.cfg
        if stop_at_depth is not None and not cfg.alignment_depth <= stop_at_depth <= cfg.depth:
            raise ValueError(f"stop_at_depth must be in [{cfg.alignment_depth}, {cfg.depth}], got {stop_at_depth}")
        x = self.x_embedder(x) + self.pos_embed  # (N, T, D)
        c = self.t_embedder(t) + self.y_embedder(y, force_drop_ids)  # (N, D)
        zs: list[Tensor] = []
        for i, block in enumerate(self.blocks, start=1):
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                # recompute the block in backward instead of keeping its activations: memory for compute. A
                # block draws no random numbers, so there is no RNG state to replay (and reading it would stop
                # a CUDA graph capture)
                x = torch.utils.checkpoint.checkpoint(block, x, c, use_reentrant=False, preserve_rng_state=False)
            else:
                x = block(x, c)  # (N, T, D)
            if i == cfg.alignment_depth and project:
                zs = [proj(x) for proj in self.projectors]  # each (N, T, z_dim)
            if stop_at_depth is not None and i == stop_at_depth:
                return None, zs
        x = self.final_layer(x, c)  # (N, T, p*p*C)
        return self.unpatchify(x), zs  # (N, C, H, W)

    # ----------------------------------------------------------------- latent statistics
    def normalize_latent(self, z: Tensor) -> Tensor:
        """Clean VAE latent -> normalised latent. Train mode: batch stats (+ running update);
        eval mode: running stats. Differentiable w.r.t. z in both modes."""
        return self.bn(z)

    def denormalize_latent(self, x: Tensor) -> Tensor:
        """Inverse of ``normalize_latent`` in eval mode (uses the running statistics)."""
        shape = (1, -1, 1, 1)
        std = torch.sqrt(self.bn.running_var + self.bn.eps).view(shape).to(x.dtype)
        return x * std + self.bn.running_mean.view(shape).to(x.dtype)

    @torch.no_grad()
    def init_latent_stats(self, mean: Tensor, var: Tensor) -> None:
        """Seed the BN running stats from a VAE's per-channel latent mean / variance."""
        self.bn.running_mean.copy_(mean.reshape(-1))
        self.bn.running_var.copy_(var.reshape(-1))
