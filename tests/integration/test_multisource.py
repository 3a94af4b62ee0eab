"""Several sources in one study: same splits and seeds, scratch shared per architecture, sources compared."""
from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import cli, prepared
from transferlab import StudyConfig
from transferlab.analysis.stats import verdict_of
from transferlab.errors import UserError
from transferlab.multisource import Source, run_sources
from transferlab.results import TrialSpec
from transferlab.training import Budget
from transferlab.trial import run_trial


def _perturbed(bb, scale=0.3, seed=5):
    other = bb.clone()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * p.std().nan_to_num(0.1) * torch.randn(p.shape, generator=g))
    other.spec = {**bb.spec, "source": "demo:cnn-perturbed"}
    return other


def test_scratch_does_not_depend_on_the_pretrained_weights(cnn, digits, tiny_budget):
    """Why sharing scratch is exact: two sources of one architecture and inputs train the same scratch model."""
    other = _perturbed(cnn)
    spec = TrialSpec("scratch", {}, 3, 5)
    a = run_trial(spec, cnn, "a", prepared(cnn, digits), tiny_budget)
    b = run_trial(spec, other, "b", prepared(other, digits), tiny_budget)
    assert a.test_acc == b.test_acc and a.history[-1]["val_loss"] == b.history[-1]["val_loss"]


def _config(**kw):
    base = dict(seeds=[0, 1, 2], sizes=[5, "all"], strategies=["scratch", "linear_probe", "head", "finetune"],
                budget=Budget(epochs=3, patience=2, batch_size=16, lrs=(3e-3, 1e-2)))
    return StudyConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    from transferlab import zoo
    from transferlab.data.builtin import digits_target

    cnn, mlp = zoo.pretrained("cnn"), zoo.pretrained("mlp")
    data = digits_target(half="B")
    sources = [Source("cnn", cnn, data), Source("cnn-perturbed", _perturbed(cnn), data), Source("mlp", mlp, data)]
    out = tmp_path_factory.mktemp("multi")
    return sources, out, run_sources(sources, _config(), out)


def test_scratch_runs_once_per_architecture(two_sources):
    sources, out, res = two_sources
    cnn, perturbed, mlp = res.studies
    per_study = 2 * 3  # sizes x seeds
    assert cnn.study["run"]["trials_run"] == 4 * per_study
    assert perturbed.study["run"]["trials_run"] == 3 * per_study, "its scratch trials were adopted, not rerun"
    assert mlp.study["run"]["trials_run"] == 4 * per_study, "another architecture runs its own scratch"
    shared = [r for r in perturbed.trials if r["strategy"] == "scratch"]
    assert len(shared) == per_study and all(r["shared_from"] == "cnn" for r in shared)
    own = {r["trial_id"]: r["test_acc"] for r in cnn.trials if r["strategy"] == "scratch"}
    assert {r["trial_id"]: r["test_acc"] for r in shared} == own
    info = json.loads((out / "sources.json").read_text())["sources"]
    groups = [i["scratch_group"] for i in info]
    assert groups[0] == groups[1] != groups[2]


def test_sources_are_ranked_with_paired_comparisons(two_sources):
    sources, out, res = two_sources
    c = res.comparison
    last = c.rankings[-1]
    assert last.n_train == "all" and len(c.rankings) == 2
    names = [x.name for x in last.contestants]
    assert set(names) == {"cnn", "cnn-perturbed", "mlp", "none: scratch (for cnn, cnn-perturbed)",
                          "none: scratch (for mlp)"}
    assert all(len(x.seeds) == 3 for x in last.contestants)  # equal seeds: the paired leader is the best mean
    vals = [x.val_acc.mean for x in last.contestants]
    assert vals[0] == pytest.approx(max(vals)), "the leader leads on validation"
    assert last.contestants[0].vs_leader_test is None
    for x in last.contestants[1:]:
        v = x.vs_leader_val
        assert v.n == 3 and v.verdict == verdict_of(v.lo, v.hi, 0.01), "the verdict is the one its interval shows"
        # every pair of every (source, configuration) chosen among, not only the contestants shown
        m = round((1 + (1 + 8 * v.family) ** 0.5) / 2)
        assert m * (m - 1) // 2 == v.family and m > len(names), "the family counts every configuration chosen among"
        # paired over the same seeds: the difference of means is the mean difference
        assert x.vs_leader_test.mean == pytest.approx(x.test_acc.mean - last.contestants[0].test_acc.mean, abs=1e-9)
    rec = c.recommendation
    chosen = next(x for x in last.contestants if (x.is_scratch if rec["source"] is None else x.name == rec["source"]))
    assert rec["leader"] == last.leader and (chosen.name == last.leader or chosen.vs_leader_val.verdict == "equivalent")
    assert rec["text"].startswith("Use ")
    assert {r["label"] for r in c.table} == {"scratch", "linear_probe", "head", "finetune"}
    assert {s.score for s in c.scores} >= {"logme", "hscore", "knn_acc", "probe_acc"}  # LEEP, NCE: source heads kept
    for s in c.scores:
        assert -1 <= s.kendall_tau <= 1 and set(s.by_source) == {"cnn", "cnn-perturbed", "mlp"}
    saved = json.loads((out / "comparison.json").read_text())
    assert saved["recommendation"] == rec
    html = (out / "report.html").read_text()
    assert "Which pretrained model" in html and "cnn-perturbed/report.html" in html and rec["text"][:60] in html


def test_rerun_resumes_every_source(two_sources):
    sources, out, res = two_sources
    again = run_sources(sources, _config(), out)
    assert [s.study["run"]["trials_run"] for s in again.studies] == [0, 0, 0]
    assert again.comparison.recommendation == res.comparison.recommendation


def test_sources_with_other_splits_are_refused(cnn, mlp, tmp_path):
    from transferlab.data.builtin import digits_target

    with pytest.raises(UserError, match="other splits"):
        run_sources([Source("a", cnn, digits_target(half="B")), Source("b", mlp, digits_target(half="A"))],
                    _config(), tmp_path / "x")
    assert not (tmp_path / "x").exists(), "refused before anything was written"


@pytest.mark.slow  # a long end-to-end run: in the slow suite, which CI runs too
def test_cli_several_models(tmp_path):
    out = tmp_path / "cmp"
    res = cli("run", "--model", "demo:cnn", "--model", "demo:mlp", "--data", "demo:digits", "--seeds", "2",
              "--sizes", "5", "--epochs", "2", "--strategies", "scratch,linear_probe,head", "--workers", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "demo-cnn" / "report.html").exists() and (out / "demo-mlp" / "study.json").exists()
    comparison = json.loads((out / "comparison.json").read_text())
    printed = " ".join(res.stdout.split())
    assert " ".join(comparison["recommendation"]["text"].split())[:100] in printed
    (out / "report.html").unlink()
    res = cli("report", str(out))
    assert res.returncode == 0 and (out / "report.html").exists(), res.stderr


def test_study_file_lists_models(tmp_path):
    from transferlab.config import read_study_file

    f = tmp_path / "s.toml"
    f.write_text('[[models]]\nspec = "demo:cnn"\n[[models]]\nname = "ours"\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n')
    sf = read_study_file(f)
    assert [m["spec"] for m in sf.models] == ["demo:cnn", "demo:mlp"] and sf.models[1]["name"] == "ours"
    res = cli("run", "--config", str(f), "--seeds", "2", "--sizes", "5", "--epochs", "1", "--strategies", "scratch,head",
              "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "o" / "sources.json").read_text())["sources"]
    assert [i["name"] for i in info] == ["demo-cnn", "ours"] and (tmp_path / "o" / "ours" / "report.html").exists()
    f.write_text('[model]\nspec = "demo:cnn"\n[[models]]\nspec = "demo:mlp"\n[data]\nspec = "demo:digits"\n')
    with pytest.raises(UserError, match=r"both \[model\] and \[\[models\]\]"):
        read_study_file(f)


def test_weights_must_pair_with_models(tmp_path):
    res = cli("run", "--model", "demo:cnn", "--model", "demo:mlp", "--weights", "a.pt", "--data", "demo:digits",
              "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "1 --weights for 2 --model" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_sources_share_one_automatic_seed_cap(monkeypatch, tmp_path):
    """Sources are compared seed by seed under one design, so ``max_seeds = "auto"`` resolves once for all of them
    from their summed worst case: here each source alone would get 12, and together (650 s at 12) they get 10."""
    from transferlab import zoo
    from transferlab.data.builtin import digits_target

    worst = iter([{10: 100.0, 12: 250.0, 24: 700.0}, {10: 200.0, 12: 400.0, 24: 900.0}])
    monkeypatch.setattr("transferlab.timebudget.worst_by_cap", lambda prep, configs: next(worst))
    data = digits_target(half="B")
    config = _config(seeds=None, first_seeds=2, sizes=[5], strategies=[{"name": "scratch"}, {"name": "head"}],
                     seed_budget="10m")
    res = run_sources([Source("mlp", zoo.pretrained("mlp"), data), Source("cnn", zoo.pretrained("cnn"), data)],
                      config, tmp_path)
    assert [s.study["design"]["looks"][-1] for s in res.studies] == [10, 10]
    cap = json.loads((tmp_path / "sources.json").read_text())["seed_cap"]
    assert cap["max_seeds"] == 10 and "every seed to 10, summed over the 2 sources," in cap["why"], cap
    assert all(s.study["seed_cap"]["max_seeds"] == 10 for s in res.studies)
    again = run_sources([Source("mlp", zoo.pretrained("mlp"), data), Source("cnn", zoo.pretrained("cnn"), data)],
                        config, tmp_path)  # a rerun keeps the cap (the cost is not measured again) and its reason
    assert [s.study["design"]["looks"][-1] for s in again.studies] == [10, 10]
    assert json.loads((tmp_path / "sources.json").read_text())["seed_cap"] == cap


def test_sources_with_depths_chosen_by_the_profile_get_their_shared_cap(tmp_path):
    """The shared cap is measured before any profile: over every freeze depth (an upper bound), not a crash."""
    res = cli("run", "--model", "demo:cnn", "--model", "demo:mlp", "--data", "demo:digits", "--depths", "auto",
              "--sizes", "5", "--strategies", "scratch,freeze_k", "--out", str(tmp_path / "o"), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "Seeds: up to" in res.stdout and "summed over the 2 sources" in res.stdout
