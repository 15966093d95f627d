"""Measuring a talking-face video from its decoded frames (docs/METRICS.md).

Modules: ``sync`` (speech envelope, audio-visual offset, phone-level lip checks),
``dynamics`` (blinks, jitter, head-pose ranges, ADFD), ``background`` (SSIM, flicker),
``tracking`` (face and head followed through the frames), ``evaluator`` (one pass over a
video → ``VideoEvaluation``), ``report`` (the report and its outputs), ``comparison``
(two reports side by side).
"""

from .comparison import COMPARE_HEADERS, compare
from .evaluator import VideoEvaluator, evaluate_video
from .report import VideoEvaluation

__all__ = ["COMPARE_HEADERS", "VideoEvaluation", "VideoEvaluator", "compare", "evaluate_video"]
