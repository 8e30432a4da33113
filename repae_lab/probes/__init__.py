"""Latent-space probes over a run's snapshots: what end-to-end tuning does to the VAE latent and the SiT.

Per snapshot (same class-balanced probe images at every step):
  latent statistics   spatial variance / total variation (REPA-E Table 1), effective rank, high-frequency
                      share, per-channel moments, the latent BatchNorm's running statistics   latent_stats
  linear / k-NN       class accuracy of frozen latents and mean-pooled SiT tokens, held-out split  linear
  alignment           CKNNA and mutual k-NN of SiT tokens (and latents) with the REPA target (k=10) alignment
  UMAP                2-D embeddings per snapshot                                              umap_probe
Per run (or comparison):
  PCA                 one basis and colour range over all snapshots; PCA-RGB maps (Fig. 2 / 6) pca
  AlignedUMAP         embeddings across steps, row i the same image: its trajectory         umap_probe
`probe_run` computes and caches all of it in RUN/probes/, `compare_runs` writes one table across runs,
`load_probes` reads the cache back for notebooks and widgets.

umap-learn is optional and imported only when a UMAP is computed.
"""
from .alignment import alignment_to, cknna, mutual_knn, neighbours
from .features import ProbeError, encoder_target_features, flat_latents, per_image, snapshot_features
from .latent_stats import (
    channel_moments,
    effective_rank,
    effective_rank_images,
    effective_rank_pixels,
    high_frequency_share,
    latent_statistics,
    spatial_variance,
    total_variation,
)
from .linear import knn_accuracy, linear_probe_accuracy, stratified_split
from .pca import PCABasis, explained_variance, fit_pca_basis, pca_rgb, pixel_vectors, project
from .runner import (
    PROBE_DIR,
    ProbeSettings,
    RunProbes,
    SnapshotProbes,
    check_run,
    compare_runs,
    comparison_pca_basis,
    default_table_dir,
    load_probes,
    probe_run,
    probe_snapshot,
    write_table,
)
from .umap_probe import aligned_umap, trajectory_steps, umap_embedding

__all__ = [
    "PROBE_DIR", "PCABasis", "ProbeError", "ProbeSettings", "RunProbes", "SnapshotProbes",
    "aligned_umap", "alignment_to", "channel_moments", "check_run", "cknna", "compare_runs", "comparison_pca_basis",
    "default_table_dir", "effective_rank", "effective_rank_images", "effective_rank_pixels",
    "encoder_target_features", "explained_variance", "fit_pca_basis", "flat_latents", "high_frequency_share",
    "knn_accuracy", "latent_statistics", "linear_probe_accuracy", "load_probes", "mutual_knn", "neighbours",
    "pca_rgb", "per_image", "pixel_vectors", "probe_run", "probe_snapshot", "project", "snapshot_features",
    "spatial_variance", "stratified_split", "total_variation", "trajectory_steps", "umap_embedding", "write_table",
]
