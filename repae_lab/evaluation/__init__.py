"""Evaluation: which feature spaces judge a run (spaces.py), measuring sample sets and VAEs (measure.py), the
records it leaves in a run directory (records.py), `repae-lab eval` (run.py) and the in-training evaluator
handed to the loop (during_training.py)."""
from .during_training import TrainingEvaluator
from .measure import evaluate_images, evaluate_sampling, evaluate_vae, sample_metrics
from .records import eval_curve, format_record, protocol_tag, write_evaluation
from .run import evaluate_run
from .spaces import build_spaces, default_n, default_spaces, parse_spaces, training_eval_spaces

__all__ = ["TrainingEvaluator", "build_spaces", "default_n", "default_spaces", "eval_curve", "evaluate_images",
           "evaluate_run", "evaluate_sampling", "evaluate_vae", "format_record", "parse_spaces", "protocol_tag",
           "sample_metrics", "training_eval_spaces", "write_evaluation"]
