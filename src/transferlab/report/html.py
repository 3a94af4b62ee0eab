"""report.html: one self-contained file (figures inlined), built from study.json and trials.jsonl alone."""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path

from transferlab.analysis import analyze
from transferlab.errors import UserError
from transferlab.report import plots
from transferlab.results import TrialStore, read_study

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
td:first-child,th:first-child{text-align:left}tr.scratch{font-weight:bold}
.better{color:#1a7f37}.worse{color:#cf222e}.equivalent{color:#0969da}.inconclusive{color:#6e7781}
.rec{background:#f6f8fa;border-left:4px solid #0969da;padding:.8em 1em;font-size:1.05em}
img{max-width:100%}code{background:#f6f8fa;padding:0 .2em}
"""

# Records script errors and undecodable figures on <body>, so a headless browser test can read them back.
CHECK_JS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message)); });
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-figures', String(imgs.length));
  document.body.setAttribute('data-figures-ok', String(ok));
  document.body.setAttribute('data-errors', String(window.__errors.length));
  document.body.setAttribute('data-ready', '1');
});
"""


def _e(x) -> str:
    return html.escape(str(x))


def _pct(ci: dict) -> str:
    if ci is None or not math.isfinite(ci.get("mean", math.nan)):
        return ""
    if not math.isfinite(ci["lo"]):
        return f"{100 * ci['mean']:.1f}"
    return f"{100 * ci['mean']:.1f} [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}]"


def _pp(ci: dict) -> str:
    if not math.isfinite(ci["lo"]):
        return f"{100 * ci['mean']:+.1f}"
    return f"{100 * ci['mean']:+.1f} [{100 * ci['lo']:+.1f}, {100 * ci['hi']:+.1f}]"


def _verdict_cell(g: dict | None) -> str:
    if not g:
        return "<td></td>"
    v, extra = g["verdict"], ""
    if v == "inconclusive" and g["gain"].get("seeds_needed"):
        n = g["gain"]["seeds_needed"]
        extra = f" (~{n} seeds)" if n <= 200 else " (&gt;200 seeds)"
    p = g["gain"].get("p_equiv_adj" if v == "equivalent" else "p_diff_adj")
    title = f" title='Holm- and look-adjusted p = {p:.3g}'" if p is not None else ""
    return f"<td class='{v}'{title}>{v}{extra}</td>"


def _summary_table(a: dict) -> str:
    gains = {(g["label"], str(g["n_train"])): g for g in a["gains"]}
    speed = {(s["label"], str(s["n_train"])): s for s in a["speedups"]}
    head = ("<tr><th>strategy</th><th>per class</th><th>seeds</th><th>val acc %</th><th>test acc % [95% CI]</th>"
            "<th>gain vs scratch, pp [95% CI]</th>"
            "<th>verdict</th><th>speed-up</th><th>trainable params</th><th>s / trial</th></tr>")
    rows = []
    for r in a["accuracy"]:
        key = (r["label"], str(r["n_train"]))
        g, s = gains.get(key), speed.get(key)
        sp = f"{s['speedup']:.1f}x" if s and s["speedup"] else ("never" if s else "")
        rows.append(
            f"<tr class='{'scratch' if r['label'] == 'scratch' else ''}'><td>{_e(r['label'])}</td><td>{_e(r['n_train'])}</td>"
            f"<td>{len(r['seeds'])}</td><td>{100 * r['best_val_acc']:.1f}</td><td>{_pct(r['test_acc'])}</td>"
            f"<td>{_pp(g['gain']) if g else ''}</td>{_verdict_cell(g)}<td>{sp}</td>"
            f"<td>{r['trainable_params']:,}</td><td>{r['wall_s']:.2f}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _sweep_table(a: dict) -> str:
    rows = []
    for s in a["sweep"]["sizes"]:
        bg = s["best_gain"]
        counts = " / ".join(str(len(s[k])) for k in ("better_than_scratch", "equivalent_to_scratch", "worse_than_scratch",
                                                     "inconclusive"))
        rows.append(f"<tr><td>{_e(s['n_train'])}</td><td>{s['n_train_total']}</td><td>{_e(s['status'] or '')}</td>"
                    f"<td>{_pct(s['scratch_acc']) if s['scratch_acc'] else ''}</td>"
                    f"<td>{_e(s['best_transfer'] or '')}</td><td>{_pp(bg) if bg else ''}</td>"
                    f"<td class='{s['best_verdict'] or ''}'>{s['best_verdict'] or ''}</td><td>{counts}</td>"
                    f"<td>{_e(', '.join(s['better_than_scratch']) or '-')}</td></tr>")
    head = ("<tr><th>per class</th><th>total</th><th>status</th><th>scratch acc %</th><th>best transfer</th>"
            "<th>its gain, pp</th><th>verdict</th><th>better / equivalent / worse / inconclusive</th>"
            "<th>measurably better than scratch</th></tr>")
    return f"<table>{head}{''.join(rows)}</table><p>{_e(a['sweep'].get('text', ''))}</p>"


def _design_text(study: dict, a: dict) -> str:
    """What every strategy shared, and how verdicts are decided: stated, so a reader can check it."""
    cfg, budget = study.get("config", {}), study.get("config", {}).get("budget", {})
    d, dec = a.get("design", {}), a.get("decided", {})
    aug = study.get("augmentation") or {}
    seeds = (f"seeds in rounds of {', '.join(str(n) for n in d.get('looks', []))} (more seeds only where a verdict "
             "was still open; strategies decided worse than the validation leader left the race)"
             if len(d.get("looks", [])) > 1 else f"the same {d.get('looks', ['?'])[0]} seeds")
    applied = (f"{_e(', '.join(aug['kinds']))}, drawn per example from {aug['views']} fixed views of each training "
               "example, for every strategy (frozen ones through cached features of those views)"
               if aug.get("kinds") else "none")
    halving = "successive halving on validation (all candidates a few epochs, the better half goes on)" if cfg.get(
        "halving") else "every candidate trained for the whole budget"
    share = f"{100 * dec['share']:.0f}%" if dec.get("share") is not None else "n/a"
    return (f"<p>Every strategy, <b>scratch</b> included (the same architecture, re-initialised "
            f"{_e((study.get('model') or {}).get('init', 'by reset_parameters()'))}), ran on the same splits, the same "
            f"epoch budget ({budget.get('epochs')} epochs, early stopping patience {budget.get('patience')}, batch "
            f"{budget.get('batch_size')}), the same number of tuned values ({len(budget.get('lrs') or [])}: the LR grid "
            f"{_e(budget.get('lrs'))}, or as many C values for a linear probe; {halving}), {seeds}. Augmentation: {applied}. "
            "Every choice (LR, epoch, the recommended strategy) was made on validation; the test split was read only to "
            "score each trial's chosen checkpoint.</p>"
            f"<p>Verdicts against scratch: paired by seed; <b>equivalent</b> when the difference is shown to lie inside "
            f"±{100 * d.get('margin', 0.01):.1f} pp (TOST), <b>better</b>/<b>worse</b> when shown not to be 0, otherwise "
            f"<b>inconclusive</b>. Error rate {100 * d.get('alpha', 0.05):.0f}% per target size: Holm across the "
            "strategies, alpha spent over the looks (Kim-DeMets, rho 2, Bonferroni over looks). Intervals shown are "
            f"unadjusted 95% CIs. Decided: {dec.get('decided', 0)} of {dec.get('total', 0)} comparisons ({share}).</p>")


def _profile_section(study: dict, a: dict) -> str:
    prof = study.get("profile")
    if not prof:
        return ""
    rows = "".join(f"<tr><td>{c['k']}</td><td>{_e(c['name'])}</td><td>{c['dim']}</td><td>{c['logme']:.3f}</td>"
                   f"<td>{c['hscore']:.2f}</td><td>{100 * c['knn_acc']:.1f}</td><td>{100 * c['probe_acc']:.1f}</td></tr>"
                   for c in prof["cuts"])
    extra = []
    if prof.get("leep") is not None:
        extra.append(f"LEEP {prof['leep']:.3f}, NCE {prof['nce']:.3f} (source classifier on the target).")
    if prof.get("a_distance") is not None:
        extra.append(f"Proxy A-distance source vs target on the pretrained features: {prof['a_distance']:.2f} (0 = same, 2 = disjoint).")
    val = a.get("profile_validation")
    if val:
        taus = ", ".join(f"{k} {v:+.2f}" if v is not None else f"{k} n/a" for k, v in val["kendall_tau"].items())
        extra.append(f"How well each score ranked the freeze depths {val['depths']} by their measured validation accuracy "
                     f"at {val['n_train']} per class (Kendall tau, 1 = perfect): {taus}.")
    head = ("<tr><th>k</th><th>after block</th><th>dim</th><th>LogME</th><th>H-score</th><th>kNN val %</th>"
            "<th>probe val %</th></tr>")
    study_s = (study.get("run") or {}).get("wall_s")
    share = f", {100 * prof['seconds'] / study_s:.1f}% of the study's {study_s:.0f} s of training" if study_s else ""
    png = plots.profile_scores(prof, a.get("depth"))
    img = f"<img alt='per-layer scores' src='data:image/png;base64,{png}'>" if png else ""
    return (f"<h2>Which layers transfer (before training)</h2><p>Computed in {prof['seconds']:.1f} s on "
            f"{prof['n_train']} training examples{share}.</p><table>{head}{rows}</table><p>{_e(' '.join(extra))}</p>{img}")


def _moved_section(a: dict) -> str:
    if not a.get("moved"):
        return ""
    blocks = a["moved"][0]["blocks"]
    head = "<tr><th>strategy</th>" + "".join(f"<th>{_e(b['block'])}</th>" for b in blocks) + "</tr>"
    rows = "".join("<tr><td>" + _e(m["label"]) + "</td>" + "".join(
        f"<td>{b['weight_change']:.3f} / {b['cka']:.2f}</td>" for b in m["blocks"]) + "</tr>" for m in a["moved"])
    return (f"<h2>What fine-tuning moved</h2><p>Per block, at {_e(a['moved'][0]['n_train'])} per class: relative weight "
            "change ||W - W0|| / ||W0|| and linear CKA between pretrained and fine-tuned activations on validation "
            f"inputs (1 = unchanged).</p><table>{head}{rows}</table>")


def _slow_section(a: dict) -> str:
    first = a.get("first_epochs") or {}
    if not first:
        return ""
    strategies = first["strategies"]
    blocks = list(next(iter(strategies.values())).keys())
    head = "<tr><th>strategy</th>" + "".join(f"<th>{_e(b)}</th>" for b in blocks) + "</tr>"
    rows = "".join("<tr><td>" + _e(lab) + "</td>" + "".join(
        f"<td>{v[b]['update_ratio']:.2g} / {v[b]['grad_norm']:.2g}</td>" if b in v else "<td></td>" for b in blocks) + "</tr>"
        for lab, v in strategies.items())
    flags = "".join(f"<li>{_e(f)}</li>" for f in a.get("slow_start_flags", [])) or "<li>No flag raised.</li>"
    return (f"<h2>Why does it learn slower?</h2><p>Epoch 1 at {_e(first['n_train'])} per class, per block: update-to-weight "
            f"ratio ||W1 - W0|| / ||W0|| / mean gradient norm per step.</p><ul>{flags}</ul><table>{head}{rows}</table>")


def _activation_section(study: dict) -> str:
    act = study.get("activations")
    if not act:
        return ""
    intro = (f"<h2>What block {_e(act['block'])} responds to</h2><p>The target training inputs that most activate the "
             f"{len(act['channels'])} most active channels of block {_e(act['block'])} (k={act['k']}), one row per channel.</p>")
    if act.get("grid_png"):
        return intro + f"<img alt='top activations' src='data:image/png;base64,{act['grid_png']}'>"
    rows = "".join(f"<tr><td>{ch['channel']}</td><td>{'<br>'.join(_e(s) for s in ch.get('snippets', []))}</td></tr>"
                   for ch in act["channels"])
    return intro + f"<table><tr><th>channel</th><th>top inputs</th></tr>{rows}</table>"


def _figure(title: str, png: str | None, caption: str) -> str:
    if png is None:
        return ""
    return f"<h2>{_e(title)}</h2><p>{_e(caption)}</p><img alt='{_e(title)}' src='data:image/png;base64,{png}'>"


def render(study: dict, records: list[dict], layers: dict | None = None) -> str:
    from transferlab.analysis.layers import splice_curves

    a = analyze(records, study)
    splice = splice_curves(layers)
    rec = a["recommendation"]
    data, model = study.get("data", {}), study.get("model", {})
    zero = a.get("zero_shot")
    zero_html = (f"<p>Zero-shot: the source model, untouched, classifies {100 * zero['test_acc']:.1f}% of the test examples "
                 f"of the {zero['chosen']['classes_shared']} classes it already knows.</p>") if zero else ""
    failed = "".join(f"<li>{_e(f['label'])} n={_e(f['n_train'])} seed={f['seed']}: {_e(f['status'])} "
                     f"{_e(f['error'] or '')}{' at epoch ' + str(f['diverged_epoch']) if f['diverged_epoch'] else ''}</li>"
                     for f in a["failed"])
    figs = [
        _figure("Learning curves", plots.learning_curves(a) if a["curves"] else None,
                "Validation accuracy per epoch of the chosen learning rate, averaged over seeds; scratch dashed black."),
        _figure("Gain over scratch", plots.gains(a),
                "Paired by seed, unadjusted 95% CI. Green: better; red: worse; blue: equivalent (inside the margin); "
                "gray: inconclusive (not decided at these seeds)."),
        _figure("Accuracy vs freeze depth", plots.accuracy_vs_depth(a),
                "Which layers transfer: freezing the first k blocks and fine-tuning the rest."),
        _figure("Accuracy vs target size", plots.accuracy_vs_size(a),
                "How the answer changes with the amount of target data."),
        _figure("Splice curves: where features stop transferring", plots.splice_curves(splice),
                "AnB: the first n pretrained blocks frozen, the rest re-initialised and trained on the target; AnB+: "
                "the same, all fine-tuned; BnB/BnB+: the same from a network trained on the target itself. A dip of BnB "
                "below the baseline marks co-adapted layers split apart; AnB below BnB marks source-specific features."),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>transferlab report: {_e(data.get('name', ''))}</title>
<style>{CSS}</style><script>{CHECK_JS}</script></head>
<body>
<h1>Transfer study: {_e(model.get('spec', {}).get('source', 'model'))} &rarr; {_e(data.get('name', 'target'))}</h1>
{_design_text(study, a)}
<h2>Recommendation</h2><div class="rec" id="recommendation">{_e(rec['text'])}</div>
{zero_html}
<h2>Results</h2>{_summary_table(a)}
<h2>Data-size sweep</h2>{_sweep_table(a)}
{_profile_section(study, a)}
{_moved_section(a)}
{_slow_section(a)}
{_activation_section(study)}
{''.join(figs)}
<h2>Study</h2>
<p>Model blocks: {_e(', '.join(model.get('blocks', [])))} ({model.get('params', 0):,} parameters).
Target: {_e(data.get('name'))}, classes {_e(', '.join(data.get('class_names', [])))}; train pool {data.get('n_train_pool')},
validation {data.get('n_val')}, test {data.get('n_test')} ({_e(data.get('splits'))}).
Similarity: {_e((study.get('similarity') or {}).get('summary', 'not measured'))}.
Run: {_e(study.get('run', {}))}. Environment: {_e(study.get('environment', {}))}.</p>
{'<h2>Trials that did not finish</h2><ul>' + failed + '</ul>' if failed else ''}
</body></html>"""


def write_report(out_dir: str | Path) -> Path:
    """Rebuild ``report.html`` in a study folder from its JSON files."""
    out_dir = Path(out_dir)
    study = read_study(out_dir)
    records = TrialStore(out_dir / "trials.jsonl").load()
    layers = json.loads((out_dir / "layers.json").read_text()) if (out_dir / "layers.json").exists() else None
    path = out_dir / "report.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(study, records, layers))
    os.replace(tmp, path)
    return path
