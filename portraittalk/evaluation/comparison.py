"""Two evaluations side by side: a table with the better video per metric, and their
per-frame curves for one plot."""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from .report import COMPARE_ROWS, VideoEvaluation, with_unit

COMPARE_HEADERS = ("Metric", "A", "B", "Better")


def compare(report_a: VideoEvaluation | Mapping[str, Any], report_b: VideoEvaluation | Mapping[str, Any],
            names: tuple[str, str] | None = None):
    """Two evaluations side by side: (rows for a table, long-format DataFrame for one plot).

    ``rows``: one ``[metric, value A, value B, better]`` list per line of COMPARE_ROWS
    (headers in COMPARE_HEADERS), where ``better`` is the better video's name, "same", or ""
    when the metric has no better direction or a value is missing.
    The DataFrame has columns ``video, metric, frame, time_s, value, series``: each video's
    per-frame identity similarity and local lip-sync correlation (frames without a value
    left out), ready for ``gr.LinePlot(df, x="time_s", y="value", color="series")``.
    Reports may be :class:`VideoEvaluation` objects or their ``to_dict()`` JSON.
    """
    import pandas as pd

    a, b = _as_report(report_a), _as_report(report_b)
    if names is None:
        names = (a["summary"].get("video") or "A", b["summary"].get("video") or "B")
        if names[0] == names[1]:
            names = (f"A: {names[0]}", f"B: {names[1]}")
    rows = []
    for key, label, unit, better, spec in COMPARE_ROWS:
        va, vb = a["summary"].get(key), b["summary"].get(key)
        rows.append([label, with_unit(va, spec, unit), with_unit(vb, spec, unit), _better(va, vb, better, names)])
    frames = []
    for name, rep in zip(names, (a, b)):
        fps = float(rep["video"]["fps"]) or 25.0
        for metric, key in (("identity (cosine)", "identity_cosine"), ("lip sync (local r)", "lip_sync_local")):
            values = np.array([np.nan if v is None else v for v in rep["curves"].get(key, [])], np.float64)
            idx = np.arange(len(values))
            frames.append(pd.DataFrame({"video": name, "metric": metric, "frame": idx, "time_s": idx / fps,
                                        "value": values, "series": f"{name} · {metric}"}))
    # Frames without a value (no sound in the window, no face) are left out: NaN is not JSON.
    curves = pd.concat(frames, ignore_index=True).dropna(subset=["value"]).reset_index(drop=True)
    return rows, curves


def _as_report(r: VideoEvaluation | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(r, VideoEvaluation):
        return r.to_dict()
    if not isinstance(r, Mapping) or "summary" not in r or "curves" not in r:
        raise InputError("A comparison needs two evaluation reports; please evaluate both videos first.")
    return r


def _better(va: Any, vb: Any, direction: str | None, names: tuple[str, str]) -> str:
    if direction is None or va is None or vb is None or isinstance(va, str):
        return ""
    if direction == "zero":
        va, vb = -abs(va), -abs(vb)
    elif direction == "lower":
        va, vb = -va, -vb
    if math.isclose(float(va), float(vb), rel_tol=1e-3, abs_tol=1e-9):
        return "same"
    return names[0] if va > vb else names[1]
