"""The report's figures, from the typed analysis alone (matplotlib, no torch)."""
from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from transferlab.analysis.sweep import main_series  # noqa: E402
from transferlab.analysis.gain import SCRATCH, size_key  # noqa: E402
from transferlab.analysis.types import Analysis, Interval  # noqa: E402

COLORS = plt.get_cmap("tab20").colors


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _sizes(analysis: Analysis) -> list:
    return sorted({r.n_train for r in analysis.accuracy}, key=size_key)


def _labels(analysis: Analysis) -> list[str]:
    labels = sorted({r.label for r in analysis.accuracy})
    return [SCRATCH] + [lab for lab in labels if lab != SCRATCH] if SCRATCH in labels else labels


def _color(labels: list[str], lab: str):
    return "black" if lab == SCRATCH else COLORS[labels.index(lab) % len(COLORS)]


def _err(ci: Interval | dict) -> tuple[float, float]:
    ci = Interval.from_dict(ci) if isinstance(ci, dict) else ci
    if not math.isfinite(ci.lo):
        return 0.0, 0.0
    return ci.mean - ci.lo, ci.hi - ci.mean


def learning_curves(analysis: Analysis) -> str:
    sizes, labels = _sizes(analysis), _labels(analysis)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.6), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], sizes):
        for c in analysis.curves.values():
            if c.n_train == n and len(c.steps) > 1:
                ax.plot(c.steps, c.val_acc, color=_color(labels, c.label),
                        lw=2.2 if c.label == SCRATCH else 1.2, ls="--" if c.label == SCRATCH else "-", label=c.label)
        ax.set_title(f"{n} per class")
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("validation accuracy (mean over seeds)")
    handles, names = axes[0][-1].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    return _png(fig)


def accuracy_vs_depth(analysis: Analysis) -> str | None:
    depth = analysis.depth
    if not depth:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    scratch = {r.n_train: r.test_acc.mean for r in analysis.accuracy if r.label == SCRATCH}
    first = main_series([d.to_dict() for d in depth])[0]["series"]
    series = sorted({d.series for d in depth}, key=lambda s: (s != first, s))
    styles = ["-", "--", "-.", ":"]
    for i, n in enumerate(_sizes(analysis)):
        for j, name in enumerate(series):
            pts = [d for d in depth if d.n_train == n and d.series == name]
            if not pts:
                continue
            err = list(zip(*[_err(d.test_acc) for d in pts]))
            ax.errorbar([d.k + 0.06 * j for d in pts], [d.test_acc.mean for d in pts], yerr=err, marker="os^D"[j % 4],
                        capsize=3, color=COLORS[2 * i], ls=styles[j % 4], label=f"{name}, {n} per class")
        if n in scratch and any(d.n_train == n for d in depth):
            ax.axhline(scratch[n], color=COLORS[2 * i], ls=":", lw=1)
    ax.set_xlabel("first block that trains (freeze_k: k blocks frozen; surgical: only block k trains)"
                  if len(series) > 1 else "blocks frozen (k)", fontsize=8)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title("Accuracy vs depth (dotted: scratch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def keep_layers(analysis: Analysis) -> str | None:
    """Seed 004 in one figure: accuracy against the cut for each per-cut series (probe, head, truncated network
    frozen and tuned; freeze_k, every block kept, for reference), scratch dotted, and on a second axis the
    parameters of blocks 1..k, which is what a network cut there keeps."""
    keep = analysis.keep
    if keep is None or not any(p.removes for p in keep.curves):
        return None
    sizes = [n for n in _sizes(analysis) if any(p.n_train == n for p in keep.curves)]
    scratch = {r.n_train: r.test_acc.mean for r in analysis.accuracy if r.label == SCRATCH}
    series = sorted({p.series for p in keep.curves}, key=lambda s: (s.startswith("freeze_k"), s))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 3.8), squeeze=False, sharey=True)
    for ax, n in zip(axes[0], sizes):
        if keep.body_params:
            twin = ax.twinx()
            ks = range(1, len(keep.body_params) + 1)
            twin.bar(list(ks), keep.body_params, color="0.85", width=0.5, zorder=0)
            twin.set_ylabel("parameters in blocks 1..k (bars)", fontsize=7, color="0.45")
            twin.tick_params(labelsize=7, colors="0.45")
            ax.set_zorder(twin.get_zorder() + 1)
            ax.patch.set_visible(False)
        for j, name in enumerate(series):
            pts = [p for p in keep.curves if p.n_train == n and p.series == name]
            if not pts:
                continue
            ref = name.startswith("freeze_k")
            err = list(zip(*[_err(p.test_acc) for p in pts]))
            ax.errorbar([p.k + 0.05 * (j - len(series) / 2) for p in pts], [p.test_acc.mean for p in pts], yerr=err,
                        marker="os^Dv<>"[j % 7], capsize=2, color="0.4" if ref else COLORS[(2 * j) % len(COLORS)],
                        ls="--" if ref else "-", lw=1, label=f"{name} (all blocks kept, k frozen)" if ref else name)
        if n in scratch:
            ax.axhline(scratch[n], color="black", ls=":", lw=1.2, label="scratch")
        ax.set_title(f"{n} per class", fontsize=9)
        ax.set_xlabel("cut k: blocks 1..k kept", fontsize=8)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (95% CI)")
    handles, names = axes[0][0].get_legend_handles_labels()
    # Below the panels: to the right it would cover the parameter axis' label.
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(names), 3), fontsize=7)
    return _png(fig)


def gains(analysis: Analysis) -> str | None:
    rows = analysis.gains
    if not rows:
        return None
    sizes = _sizes(analysis)
    labels = [lab for lab in _labels(analysis) if lab != SCRATCH]
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.6 * len(sizes), 0.35 * len(labels) + 1.6), squeeze=False, sharey=True)
    colors = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue", "inconclusive": "tab:gray"}
    for ax, n in zip(axes[0], sizes):
        for g in rows:
            if g.n_train != n:
                continue
            y = labels.index(g.label)
            lo, hi = _err(g.gain)
            ax.errorbar([100 * g.gain.mean], [y], xerr=[[100 * lo], [100 * hi]], fmt="o", capsize=3,
                        color=colors[g.verdict])
        ax.axvline(0, color="black", lw=1)
        ax.set_title(f"{n} per class")
        ax.set_xlabel("gain over scratch (pp, 95% simultaneous CI)")
        ax.grid(alpha=0.3)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    return _png(fig)


def accuracy_vs_size(analysis: Analysis) -> str | None:
    sizes, labels = _sizes(analysis), _labels(analysis)
    if len(sizes) < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for lab in labels:
        rows = sorted([r for r in analysis.accuracy if r.label == lab], key=lambda r: size_key(r.n_train))
        xs = [sizes.index(r.n_train) for r in rows]
        err = list(zip(*[_err(r.test_acc) for r in rows])) if rows else None
        ax.errorbar(xs, [r.test_acc.mean for r in rows], yerr=err, marker="o", capsize=2, label=lab,
                    color=_color(labels, lab), lw=2.2 if lab == SCRATCH else 1.2, ls="--" if lab == SCRATCH else "-")
    ax.set_xticks(range(len(sizes)), [str(s) for s in sizes])
    ax.set_xlabel("target training examples per class")
    ax.set_ylabel("test accuracy (95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)


def splice_curves(splice: dict | None) -> str | None:
    if not splice:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    styles = {"AnB": ("tab:red", "-"), "AnB+": ("tab:red", "--"), "BnB": ("tab:blue", "-"), "BnB+": ("tab:blue", "--")}
    for curve, pts in splice["curves"].items():
        if curve == "base B":
            ax.axhline(pts[0]["test_acc"]["mean"], color="black", lw=1, ls=":", label="B from scratch")
            continue
        color, ls = styles.get(curve, ("gray", "-"))
        err = list(zip(*[_err(p["test_acc"]) for p in pts]))
        ax.errorbar([p["n"] for p in pts], [p["test_acc"]["mean"] for p in pts], yerr=err, color=color, ls=ls,
                    marker="o", capsize=3, label=curve)
    ax.set_xticks(range(1, len(splice["blocks"])), splice["blocks"][:-1], fontsize=8)
    ax.set_xlabel("blocks copied (n), cut after")
    ax.set_ylabel("test accuracy (95% CI)")
    ax.set_title(f"Splice curves at {splice['n_train']} per class (Yosinski et al. 2014)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def profile_scores(profile: dict | None, depth: list) -> str | None:
    """Each per-cut score scaled to [0, 1] across cuts, with freeze_k's measured accuracy on the same axis."""
    if not profile or not profile.get("cuts"):
        return None
    cuts = profile["cuts"]
    ks = [c["k"] for c in cuts]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, (name, label) in enumerate([("logme", "LogME"), ("hscore", "H-score"), ("knn_acc", "kNN val acc"),
                                        ("probe_acc", "probe val acc")]):
        v = [c[name] for c in cuts]
        lo, hi = min(v), max(v)
        ax.plot(ks, [(x - lo) / (hi - lo) if hi > lo else 0.5 for x in v], marker="o", color=COLORS[2 * i], label=label)
    main = main_series([d.to_dict() for d in depth])
    depth = [d for d in depth if main and d.series == main[0]["series"]]
    if depth:
        size = max({d.n_train for d in depth}, key=size_key)
        pts = [d for d in depth if d.n_train == size and d.k in ks]
        if len(pts) > 1:
            v = [d.test_acc.mean for d in pts]
            lo, hi = min(v), max(v)
            ax.plot([d.k for d in pts], [(x - lo) / (hi - lo) if hi > lo else 0.5 for x in v], color="black", lw=2.2,
                    ls="--", marker="s", label=f"freeze_k test acc ({size}/class)")
    ax.set_xticks(ks, [f"{c['k']}: {c['name']}" for c in cuts], fontsize=7, rotation=30)
    ax.set_ylabel("scaled to [0, 1] across cuts")
    ax.set_title("Per-layer transferability before training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _png(fig)
