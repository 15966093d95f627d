"""Measuring a talking-face video from its decoded frames (docs/METRICS.md)."""

from .metrics import COMPARE_HEADERS, VideoEvaluation, VideoEvaluator, compare, evaluate_video

__all__ = ["COMPARE_HEADERS", "VideoEvaluation", "VideoEvaluator", "compare", "evaluate_video"]
