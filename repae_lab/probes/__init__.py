"""Latent-space probes over a run's snapshots: what end-to-end tuning does to the VAE latent and the SiT.

Per snapshot (the same class-balanced probe images at every step)                       module
  latent statistics  spatial variance and total variation (REPA-E Table 1), effective rank,
                     high-frequency share, per-channel moments, the latent BatchNorm's stats   latent_stats
  linear / k-NN      class accuracy of frozen latents and mean-pooled SiT tokens (k-fold)     linear
  alignment          CKNNA and mutual k-NN with the REPA target encoder (k = 10)               alignment
  UMAP               a 2-D embedding of the latents and of the SiT tokens                     umap_probe
Per run, or across runs
  PCA                one basis and colour range for all snapshots; PCA-RGB maps (Fig. 2 / 6)   pca
  AlignedUMAP        embeddings across steps, row i the same image: its trajectory            umap_probe
Models that were not trained here
  VAE comparison     the same images through several VAEs, every probe side by side          vae_comparison
                     (compare-vaes), and its PCA-RGB / reconstruction pictures (PIL)  vae_comparison_figures
  imported runs      the probe snapshot of an imported released checkpoint                 imported_snapshot

`probe_run` computes and caches everything in RUN/probes/ (runner, one snapshot at a time in snapshot_probes,
with the cache keys of settings), `compare_runs` writes one table across runs (compare), and `load_probes` reads
a run's cache back for notebooks and widgets (results).
umap-learn is imported only when a UMAP is computed.
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
from .linear import cross_validated, knn_accuracy, linear_probe_accuracy, stratified_folds, stratified_split
from .pca import (
    PCABasis,
    explained_variance,
    fit_pca_basis,
    fit_pca_vectors,
    image_pca_embeddings,
    pca_rgb,
    pixel_vectors,
    project,
    sample_pixel_vectors,
)
from .compare import comparison_pca_basis, compare_runs, default_table_dir, summary_table, write_table
from .results import PROBE_DIR, RunProbes, load_probes
from .runner import check_run, probe_run
from .settings import ProbeSettings
from .snapshot_probes import SnapshotProbes, probe_snapshot
from .umap_probe import aligned_umap, trajectory_steps, umap_embedding

__all__ = [
    "PROBE_DIR", "PCABasis", "ProbeError", "ProbeSettings", "RunProbes", "SnapshotProbes",
    "aligned_umap", "alignment_to", "channel_moments", "check_run", "cross_validated", "cknna", "compare_runs", "comparison_pca_basis",
    "default_table_dir", "effective_rank", "effective_rank_images", "effective_rank_pixels",
    "encoder_target_features", "explained_variance", "fit_pca_basis", "fit_pca_vectors", "image_pca_embeddings", "flat_latents", "high_frequency_share",
    "knn_accuracy", "latent_statistics", "linear_probe_accuracy", "load_probes", "mutual_knn", "neighbours",
    "pca_rgb", "per_image", "pixel_vectors", "probe_run", "probe_snapshot", "project", "sample_pixel_vectors", "snapshot_features",
    "spatial_variance", "stratified_folds", "stratified_split", "summary_table", "total_variation", "trajectory_steps", "umap_embedding", "write_table",
]
