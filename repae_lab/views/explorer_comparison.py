"""A compare-vaes folder in the latent explorer: each VAE becomes one entry beside trained runs, with the same
views (the PCA frame of the images' latents, the PCA-RGB maps in the VAE's own basis, the hover picture and
the probe numbers), read from what `repae-lab compare-vaes --out DIR` wrote (DIR/vae_comparison.json and
DIR/vae_arrays.safetensors). A VAE comparison has no training steps: every entry sits at step 0."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from safetensors.torch import load_file

from .. import rundir
from ..probes import ProbeSettings, image_pca_embeddings
from ..probes.vae_comparison import ARRAYS, COMPARISON_JSON
from .explorer_data import RunData, maps_figure, scatter_figure

# compare-vaes row key -> the probe key the explorer's table and curves use
ROW_TO_PROBE = {"linear_probe": "linear/latents", "spatial_var": "spatial_var", "total_variation": "total_variation",
                "high_freq_share": "high_freq_share", "rpsnr": "rpsnr"}


def is_comparison(path: str | Path) -> bool:
    """Whether `path` is a folder written by compare-vaes (rather than a run directory)."""
    return (Path(path) / COMPARISON_JSON).is_file()


class ComparedVAE(RunData):
    """One VAE of a compare-vaes folder, in RunData's shape (one step, 0), so every explorer figure takes it."""

    def __init__(self, folder: Path, index: int, row: dict, tensors: dict, class_names, *, images: int = 16):
        name = row["vae"]
        self.run, self.label, self.probes = folder / name, f"{name} ({row.get('latent', '?')})", None
        self.source = folder          # what was passed to the explorer (add_run refuses it twice)
        self.steps = [0]
        self.scalars = {0: {probe: row[key] for key, probe in ROW_TO_PROBE.items()
                            if isinstance(row.get(key), (int, float))}}
        labels = tensors.get("labels")
        self.labels = labels.numpy() if labels is not None else None
        self.embeddings = {0: {"labels": self.labels} if self.labels is not None else {}}
        self.aligned = {}
        latents = tensors[f"latents.{index}"]
        self.pca = {0: image_pca_embeddings([latents])[0]}
        self.rgb = {0: tensors[f"rgb.{index}"].numpy()[:images]}
        self.images = tensors[f"images.{index}"].numpy()
        self.recons = tensors[f"recons.{index}"].numpy()
        n_classes = int(self.labels.max()) + 1 if self.labels is not None and len(self.labels) else 0
        self.class_names = (list(class_names) if class_names and len(class_names) >= n_classes
                            else [str(c) for c in range(n_classes)])


def load_comparison(folder: str | Path, *, images: int = 16) -> list[ComparedVAE]:
    """Every VAE of a compare-vaes folder, in its table's order."""
    folder = Path(folder)
    summary = rundir.read_json(folder / COMPARISON_JSON) or {}
    if not (folder / ARRAYS).is_file() or "vaes" not in summary:
        raise rundir.RunError(f"'{folder}' holds a VAE table but not its arrays ({ARRAYS}); it was written by an "
                              f"older compare-vaes: run `repae-lab compare-vaes ... --out {folder}` again.")
    tensors = load_file(str(folder / ARRAYS))
    return [ComparedVAE(folder, i, row, tensors, summary.get("class_names"), images=images)
            for i, row in enumerate(summary["rows"])]


def explorer_entries(paths: Sequence[str | Path], *, compute_missing: bool = True,
                     settings: ProbeSettings | None = None, images: int = 16,
                     probe_images: bool | None = None) -> list[RunData]:
    """What the explorer shows for `paths`: a run directory gives one entry, a compare-vaes folder one per VAE."""
    entries: list[RunData] = []
    for path in map(Path, paths):
        if is_comparison(path):
            entries += load_comparison(path, images=images)
        else:
            entries.append(RunData(path, compute_missing=compute_missing, settings=settings, images=images,
                                   probe_images=probe_images))
    return entries


PCA_VIEW = "PCA of the latents (one frame for all steps)"


def comparison_figures(entries: Sequence[RunData]) -> list:
    """The explorer's views of compared VAEs as static figures: the images in each VAE's latent PCA frame,
    coloured by class, and each VAE's PCA-RGB maps."""
    scatter = scatter_figure(entries, PCA_VIEW, 0)
    scatter.update_layout(title="the same images in each VAE's latent space (PCA of the whole latents)")
    maps = maps_figure(entries, 0)
    maps.update_layout(title="PCA-RGB of each VAE's latents (its own basis; first 3 components as colour)")
    return [scatter, maps]
