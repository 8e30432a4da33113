"""The run configuration: one frozen dataclass, every field with its default and a comment on its meaning.

A run's config.json is this dataclass as JSON (config/resolve.py builds and checks it).
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Config:
    # what to train
    recipe: str = "repa-e"             # a name in config/recipes.py RECIPES
    preset: str = "workshop"           # the preset these values started from (informational)
    # data
    dataset: str = "digits"            # digits | fashion-mnist | cifar10 | imagefolder
    data_root: str | None = None       # folder for fashion-mnist / cifar10 / imagefolder; None = the dataset's default place
    download: bool = False             # let torchvision download (needs internet)
    resolution: int = 16               # pixels, square
    num_workers: int = 0               # DataLoader workers; in-memory datasets need none
    # models
    vae: str = "workshop-16"           # a VAE_CONFIGS name (fresh random VAE) or a diffusers folder / hub id
    vae_pretrain_steps: int = 0        # a VAE_CONFIGS VAE is first pretrained this many steps (L1 + KL) on the
                                       # dataset and cached, as the paper's recipes start from a pretrained VAE;
                                       # 0 = start from random weights. Ignored for a VAE loaded from a folder.
    sit_size: str = "W"                # a config/sizes.py SIT_SIZES name
    patch_size: int = 2
    alignment_depth: int = 2           # REPA reads the SiT hidden state after this many blocks
    projector_dim: int = 256           # width of the REPA projector MLP (2048 in the paper)
    projector: str = "mlp"             # mlp: REPA's 3-layer MLP on each token | conv: iREPA's one convolution on the
                                       # token grid, so the projected token sees its neighbours (docs/repa_followups.md)
    projector_kernel: int = 3          # the conv projector's kernel side (odd; iREPA's README uses 3)
    target_norm: str = "none"          # none | spatial: iREPA's normalisation of the target tokens over the token grid,
                                       # (x - gamma * mean) / std per channel, which keeps their spatial contrast
    target_norm_gamma: float = 0.6     # how much of the per-channel token mean `spatial` subtracts (iREPA's code: 0.6)
    class_dropout_prob: float = 0.1    # label dropout for classifier-free guidance
    target_encoder: str = "workshop"   # a TARGET_ENCODERS name
    target_encoder_weights: str | None = None  # local weights file or hub id for pretrained encoders
    encoder_steps: int = 300           # training steps of the workshop target encoder (cached after the first run);
                                       # 0 = an untrained, randomly initialised target (the control of paper_claims)
    perceptual: str = "auto"           # auto | lpips | workshop | none  (auto: LPIPS-VGG where its weights exist)
    disc_layers: int = 2               # PatchGAN depth (3 in the paper; 2 fits 16x16 images)
    disc_ndf: int = 32                 # PatchGAN base width (64 in the paper)
    disc_weights: str | None = None    # a pretrained discriminator to start from (the official recipe does): its
                                       # checkpoint file or a training checkpoint holding `discriminator`; None = fresh
    train_pos_embed: bool = False      # also train the fixed sin-cos pos_embed, as the official code does by
                                       # accident (docs/official_code.md); off = the paper's fixed embedding
    lpips_double_rescale: bool = False # the official LPIPS's second x*2-1 on [-1, 1] inputs (docs/official_code.md)
    # optimisation (AdamW per module, REPAE_FACTS section 2)
    steps: int = 500
    batch_size: int = 32               # global batch
    seed: int = 0
    lr: float = 1e-4                   # SiT + projector learning rate
    vae_lr: float = 1e-4
    disc_lr: float = 1e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 1.0             # max gradient norm, per module
    ema_decay: float = 0.9999          # EMA of the SiT, BN buffers included
    mixed_precision: str = "no"        # no | bf16 | fp16
    # speed switches (benchmarks/throughput.py measures them)
    tf32: bool = True                  # TF32 matmuls / convolutions on Ampere+ GPUs
    cudnn_benchmark: bool = True       # let cuDNN time its convolution algorithms once (fixed shapes; GPU only);
                                       # off for GPU runs that must repeat bitwise
    compile: str = "none"              # none | regional (each repeated block compiled once: the SiT's blocks and the
                                       # VAE's ResNet blocks; compiles in seconds) | full (the whole SiT forward, as
                                       # the REPA-E code does; minutes at SiT-XL). true = full, false = none.
    cuda_graphs: bool = False          # replay each training step as one CUDA graph (one GPU, no fp16): removes
                                       # the kernel-launch time that bounds small models (training/cuda_graphs.py)
    low_precision_group_norm: bool = False  # the VAE's GroupNorms keep the autocast dtype (statistics still in fp32):
                                       # about 40% less activation memory under bf16 (models/norms.py)
    channels_last: bool = False        # channels-last memory format for the convolutional networks (VAE,
                                       # discriminator, perceptual network)
    grad_accumulation: int = 1         # micro-batches per step (each process's share of batch_size is split)
    activation_checkpointing: bool = False   # recompute SiT blocks in backward to save memory
    cache_latents: bool = False        # frozen-VAE recipes: encode the dataset once (posterior mean and std)
    # loss weights (REPAE_FACTS section 1)
    proj_coeff: float = 0.5            # REPA weight on the SiT / projector side
    vae_align_proj_coeff: float = 1.5  # REPA weight on the VAE side
    repa_stop_step: int | None = None  # HASTE: from this step on the REPA term is gone, on the SiT and the VAE side
                                       # (no loss, no gradient, no projector or target pass); None or 0 = never
    bn_momentum: float = 0.1           # latent BatchNorm momentum
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    kl_weight: float = 1e-6
    gan_weight: float = 0.1            # generator hinge weight, fixed (no adaptive weight)
    disc_start: int = 0                # step from which the GAN terms are on
    # ablation switches (only meaningful for repa-e)
    stop_grad: bool = True             # False: the diffusion loss also reaches the VAE
    latent_norm: bool = True           # False: the latent BatchNorm is frozen at the starting VAE's statistics
    vae_reg: bool = True               # False: no L1 / perceptual / KL / GAN on the VAE
    # alarms (training/alarms.py)
    alarm_policy: str = "warn"         # warn | stop | rollback (to the last good checkpoint, lr x rollback_lr_factor)
    rollback_lr_factor: float = 0.5
    max_rollbacks: int = 3             # then stop
    alarm_patience: int = 20           # steps a sustained alarm condition must hold
    alarm_grad_norm_min: float = 1e-8
    alarm_disc_loss_min: float = 1e-3
    alarm_spatial_var_ratio: float = 0.01
    # evaluation during training (evaluation/during_training.py)
    eval_every: int = 0                # evaluate every N steps and at step 0 (0 = off)
    eval_n: int = 128                  # class-balanced samples per evaluation
    eval_sampler: str = "heun"         # sde | euler | heun
    eval_steps: int = 10               # sampler steps
    eval_cfg_scale: float = 1.0        # classifier-free guidance of the evaluation samples (1 = none)
    eval_interval: tuple[float, ...] = (0.0, 1.0)  # guide only where low <= t <= high
    eval_space: str = "auto"           # auto | comma-separated: workshop, dinov2, inception
    eval_inception_weights: str | None = None
    eval_dinov2_weights: str | None = None   # None: target_encoder_weights when the target is dinov2-b
    # bookkeeping
    log_every: int = 10                # metrics-log line every N steps (means over the interval)
    snapshot_every: int = 100          # probe-set snapshot every N steps (0 = only first and last)
    checkpoint_every: int = 250        # resumable checkpoint every N steps (0 = only the last)
    keep_checkpoints: int = 2          # how many checkpoints to keep
    probe_size: int = 200              # images in the fixed, class-balanced probe set
    snapshot_recons: int = 64          # reconstructions stored per snapshot
    snapshot_t: tuple[float, ...] = (0.25, 0.5, 0.75)  # noise levels at which SiT tokens are snapshot
    latent_stats_batches: int = 8      # batches used to estimate the starting VAE's latent statistics
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None       # where the workshop encoders and VAEs are cached (default ~/.cache/repae_lab)
    # experiment tracking beside metrics.jsonl (repae_lab/tracking; rank 0 only)
    tracker: str = "none"              # none | tensorboard | wandb | tensorboard,wandb (RUN/tensorboard/, RUN/wandb/)
    tracker_samples: int = 16          # class-conditional samples in the trackers' grid at each snapshot (0 = none)
    tracker_sample_steps: int = 10     # Heun steps of those samples (guidance as eval_cfg_scale / eval_interval)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


FIELD_TYPES: dict[str, Any] = typing.get_type_hints(Config)
FIELD_NAMES = tuple(f.name for f in fields(Config))
