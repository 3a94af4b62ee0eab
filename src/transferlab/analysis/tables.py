"""summary.csv: one row per (strategy configuration, target size)."""
from __future__ import annotations

import csv
import io

from transferlab.analysis.types import Analysis


def _fmt(x) -> str:
    return "" if x is None or x != x else f"{x:.4f}"


def summary_csv(analysis: Analysis) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["strategy", "label", "n_train_per_class", "n_train_total", "seeds", "test_acc_mean", "test_acc_ci_lo",
                "test_acc_ci_hi", "gain_vs_scratch", "gain_ci_lo", "gain_ci_hi", "verdict", "speedup",
                "trainable_params", "wall_s_mean", "not_ok"])
    for r in analysis.accuracy:
        g, s, a = analysis.gain(r.label, r.n_train), analysis.speedup(r.label, r.n_train), r.test_acc
        w.writerow([r.strategy, r.label, r.n_train, r.n_train_total, len(r.seeds), _fmt(a.mean), _fmt(a.lo), _fmt(a.hi),
                    _fmt(g.gain.mean) if g else "", _fmt(g.gain.lo) if g else "", _fmt(g.gain.hi) if g else "",
                    g.verdict if g else "", _fmt(s.speedup) if s and s.speedup else "", r.trainable_params,
                    _fmt(r.wall_s), r.not_ok])
    return buf.getvalue()
