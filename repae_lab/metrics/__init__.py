"""Evaluation metrics: Frechet distances in pluggable feature spaces, precision / recall, Inception Score,
reconstruction quality. `repae_lab.evaluate` puts them together into a run's evaluation."""
from .feature_spaces import (FEATURE_SPACES, FeatureSpace, FeatureSpaceError, build_feature_space,
                             extract_features)
from .frechet import GaussianStats, frechet_distance, frechet_distance_features, gaussian_stats
from .inception_score import inception_score
from .precision_recall import precision_recall
from .reconstruction import psnr, reconstruction_metrics, ssim
from .references import Reference, reference_statistics

__all__ = ["FEATURE_SPACES", "FeatureSpace", "FeatureSpaceError", "build_feature_space", "extract_features",
           "GaussianStats", "frechet_distance", "frechet_distance_features", "gaussian_stats", "inception_score",
           "precision_recall", "psnr", "ssim", "reconstruction_metrics", "Reference", "reference_statistics"]
