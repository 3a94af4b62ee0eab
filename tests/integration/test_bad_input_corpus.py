"""The bad-input corpus: one case per line, each a thing a user types that must give one line naming the problem
and the fix, exit status 2, no traceback and no study folder. The next bad input found is one line to add.

Cases run the CLI in this process (``invoke``), so the corpus costs seconds, not a torch import per case.
``{w}`` is a folder of bad (and good) files made once for the module; ``{out}`` is a fresh study folder.
"""
from __future__ import annotations

import shlex

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import invoke

RUN = "run --model demo:cnn --data demo:digits"
RUN_MLP = "run --model demo:mlp"
TIMM = "run --model timm:resnet10t --data demo:digits"

CORPUS = [  # (id, arguments, environment, words the one line must hold)
    ("epochs-negative", f"{RUN} --epochs -1", {}, ("epochs -1", "positive")),
    ("epochs-zero", f"{RUN} --epochs 0", {}, ("epochs 0",)),
    ("steps-zero", f"{RUN} --steps 0", {}, ("steps 0",)),
    ("epochs-and-steps", f"{RUN} --epochs 3 --steps 100", {}, ("--epochs and --steps",)),
    ("seeds-zero", f"{RUN} --seeds 0", {}, ("at least one seed",)),
    ("seeds-negative", f"{RUN} --seeds -3", {}, ("at least one seed",)),
    ("max-seeds-zero", f"{RUN} --max-seeds 0", {}, ("max_seeds 0",)),
    ("margin-zero", f"{RUN} --margin 0", {}, ("margin",)),
    ("margin-huge", f"{RUN} --margin 150", {}, ("margin",)),
    ("sizes-zero", f"{RUN} --sizes 0", {}, ("--sizes item '0'",)),
    ("sizes-word", f"{RUN} --sizes 5,many", {}, ("--sizes item 'many'",)),
    ("sizes-too-big", f"{RUN} --sizes 500", {}, ("size 500 per class", "at most")),
    ("workers-zero", f"{RUN} --workers 0", {}, ("--workers '0'",)),
    ("workers-word", f"{RUN} --workers many", {}, ("--workers 'many'",)),
    ("depths-word", f"{RUN} --depths 1,x", {}, ("--depths '1,x'",)),
    ("depths-too-deep", f"{RUN} --depths 99 --strategies scratch,freeze_k", {}, ("99",)),
    ("schedule-unknown", f"{RUN} --schedule one-cycle", {}, ("unknown LR schedule 'one-cycle'", "onecycle")),
    ("splits-unknown", f"{RUN} --splits kfold", {}, ("splits 'kfold'",)),
    ("augment-unknown", f"{RUN} --augment rotate", {}, ("rotate",)),
    ("device-unknown", f"{RUN} --device tpu", {}, ("unknown device 'tpu'",)),
    ("executor-unknown", f"{RUN} --executor spark", {}, ("unknown executor 'spark'",)),
    ("strategy-unknown", f"{RUN} --strategies scratch,finetun", {}, ("unknown strategy 'finetun'", "finetune")),
    ("strategy-unclosed", f"{RUN} --strategies 'scratch,truncate(n=2'", {}, ("does not close",)),
    ("strategy-not-key-value", f"{RUN} --strategies 'truncate(2)'", {}, ("'2' is not key=value",)),
    ("strategy-unknown-param", f"{RUN} --strategies 'truncate(m=2)'", {}, ("no parameter 'm'", "n, tune")),
    ("strategy-switch-word", f"{RUN} --strategies 'truncate(tune=maybe)'", {}, ("tune='maybe'", "tune=true")),
    ("truncate-none-kept", f"{RUN} --strategies 'scratch,truncate(n=0)'", {}, ("truncate n 0", "between 1 and 3")),
    ("cut-word", f"{RUN} --strategies 'scratch,head(cut=x)'", {}, ("head cut 'x' is not a cut", "each")),
    ("cut-too-deep", f"{RUN} --strategies 'linear_probe(cut=9)'", {}, ("cut 9 is outside", "between 1 and 3")),
    ("budget-opt-unknown", f"{RUN} --budget-opt patiense=3", {}, ("unknown budget setting 'patiense'", "patience")),
    ("budget-opt-lrs", f"{RUN} --budget-opt lrs=fast", {}, ("lrs 'fast'",)),
    ("budget-opt-weight-decay", f"{RUN} --budget-opt weight_decay=-1", {}, ("weight_decay -1",)),
    ("budget-opt-not-pair", f"{RUN} --budget-opt patience", {}, ("not key=value",)),
    ("out-is-a-file", f"{RUN} --out {{w}}/a-file.txt", {}, ("is a file", "folder")),
    ("out-is-a-file-dry-run", f"{RUN} --dry-run --out {{w}}/a-file.txt", {}, ("is a file",)),
    ("sizes-superscript", f"{RUN} --sizes 5,²", {}, ("--sizes item '²'",)),
    ("workers-superscript", f"{RUN} --workers ²", {}, ("--workers '²'",)),
    ("depths-superscript", f"{RUN} --depths ²", {}, ("--depths '²'",)),
    ("toml-strategy-not-a-table", "run --config {w}/strategy_number.toml", {}, ("strategies",)),
    ("toml-strategy-no-name", "run --config {w}/strategy_no_name.toml", {}, ("strategies",)),
    ("toml-workers-bool", "run --config {w}/workers_bool.toml", {}, ("workers True",)),
    ("predict-npz-not-numbers", "predict {w}/saved --data npz:{w}/strings.npz", {}, ("not numbers",)),
    ("out-under-a-file", f"{RUN} --out {{w}}/a-file.txt/study", {}, ("is a file",)),
    ("demo-out-is-a-file", "demo --out {w}/a-file.txt", {}, ("is a file",)),
    ("model-unknown", "run --model timm:resnet181 --data demo:digits", {}, ("did you mean", "resnet18")),
    ("model-torchvision-typo", "run --model torchvision:resnet1 --data demo:digits", {}, ("did you mean", "resnet1")),
    ("model-demo-typo", "run --model demo:cnm --data demo:digits", {}, ("did you mean", "cnn")),
    ("model-scheme-unknown", "run --model tim:resnet18 --data demo:digits", {}, ("did you mean", "timm")),
    ("data-scheme-unknown", "run --model demo:cnn --data foo:bar", {}, ("foo",)),
    ("data-missing-file", f"{RUN_MLP} --data table:{{w}}/nope.csv", {}, ("does not exist",)),
    ("no-model", "run --data demo:digits", {}, ("needs a model",)),
    ("table-nan", f"{RUN_MLP} --data table:{{w}}/nan.csv", {}, ("missing values", "'b'")),
    ("table-empty", f"{RUN_MLP} --data table:{{w}}/empty.csv", {}, ("empty",)),
    ("table-one-class", f"{RUN_MLP} --data table:{{w}}/one_class.csv", {}, ("1 class",)),
    ("table-label-typo", f"{RUN_MLP} --data table:{{w}}/t.csv --data-opt label_col=taget", {}, ("no label column 'taget'", "did you mean: target")),
    ("text-not-text", f"{RUN_MLP} --data text:{{w}}/numbers.csv", {}, ("does not hold text",)),
    ("npz-not-npz", f"{RUN_MLP} --data npz:{{w}}/fake.npz", {}, ("not a readable .npz",)),
    ("npz-nan", f"{RUN_MLP} --data npz:{{w}}/nan.npz", {}, ("NaN",)),
    ("images-one-class", "run --model demo:cnn --data images:{w}/one_class", {}, ("1 class", "at least 2")),
    ("images-empty-class", "run --model demo:cnn --data images:{w}/empty_class", {}, ("is empty",)),
    ("images-test-has-more-classes", "run --model demo:cnn --data images:{w}/extra_test", {}, ("test split has classes", "7")),
    ("images-corrupt", "run --model demo:cnn --data images:{w}/corrupt", {}, ("cannot be read", "corrupt")),
    ("weights-truncated", f"{TIMM} --weights {{w}}/truncated.safetensors", {}, ("truncated.safetensors",)),
    ("weights-garbage", f"{TIMM} --weights {{w}}/garbage.pt", {}, ("garbage.pt",)),
    ("weights-missing", f"{TIMM} --weights {{w}}/none.safetensors", {}, ("does not exist",)),
    ("toml-bad", "run --config {w}/bad.toml", {}, ("not valid TOML",)),
    ("toml-unknown-setting", "run --config {w}/unknown.toml", {}, ("unknown [study] setting 'sedes'", "seeds")),
    ("toml-bad-sizes", "run --config {w}/sizes.toml", {}, ("sizes",)),
    ("toml-missing", "run --config {w}/nope.toml", {}, ("does not exist",)),
    ("track-unknown", f"{RUN} --track wandb", {}, ("unknown tracker 'wandb'",)),
    ("mlflow-bad-scheme", f"{RUN} --seeds 1 --sizes 5 --steps 5 --strategies scratch,head --track mlflow",
     {"MLFLOW_TRACKING_URI": "nosuchscheme://x"}, ("MLflow", "MLFLOW_TRACKING_URI")),
    ("predict-no-model", "predict {w}/nope --data demo:digits", {}, ("nope",)),
    # The door (issue 35): the model meets two of the user's rows before any measurement, cache or training.
    ("table-too-few-columns", f"{RUN_MLP} --data table:{{w}}/five.csv", {}, ("shape (2, 5)", "feature columns")),
    ("table-too-few-columns-dry-run", f"{RUN_MLP} --data table:{{w}}/five.csv --dry-run", {}, ("shape (2, 5)",)),
    ("profile-misfit", "profile --model demo:mlp --data table:{w}/five.csv", {}, ("model 'demo:mlp' fails", "(2, 5)")),
    ("layers-misfit", "layers --model demo:mlp --data table:{w}/five.csv", {}, ("model 'demo:mlp' fails",)),
    ("predict-misfit", "predict {w}/saved --data table:{w}/five.csv", {}, ("the model saved in", "(2, 5)")),
    ("npz-wrong-rank", "run --model demo:cnn --data npz:{w}/rank.npz", {}, ("shape (2, 8)",)),
    ("npz-more-inputs-than-labels", "run --model demo:cnn --data npz:{w}/xy.npz", {}, ("50 rows of inputs but 40 labels",)),
    ("npz-more-labels-than-inputs", "run --model demo:cnn --data npz:{w}/yx.npz", {}, ("40 rows of inputs but 50 labels",)),
    ("npz-label-out-of-range", f"{RUN_MLP} --data npz:{{w}}/range.npz", {}, ("label 5 is not one of the 5 classes",)),
    ("npz-label-not-a-name", f"{RUN_MLP} --data npz:{{w}}/names.npz", {}, ("'eel' is not one of the class names",)),
    ("table-only-label", f"{RUN_MLP} --data table:{{w}}/only.csv", {}, ("no feature columns",)),
    ("table-id-column", f"{RUN_MLP} --data table:{{w}}/id.csv", {}, ("column 'id' has 40 distinct values", "categorical=[id]")),
    ("table-inf", f"{RUN_MLP} --data table:{{w}}/inf.csv", {}, ("'f2' holds an infinite value",)),
    ("table-categorical-unknown", f"{RUN_MLP} --data table:{{w}}/five.csv --data-opt categorical=[c]", {},
     ("no column 'c' to treat as categorical",)),
    ("hf-offline-unknown", "run --model hf:nonexistent/model-x --data demo:digits", {"HF_HUB_OFFLINE": "1"},
     ("cannot load Hugging Face model 'nonexistent/model-x'",)),
    ("images-missing-path", "run --model demo:cnn --data images:{w}/nope", {}, ("does not exist",)),
    ("time-budget-unreadable", f"{RUN} --time-budget 30x", {}, ("'30x' is not a duration",)),
    ("model-opt-malformed", f"{RUN} --model-opt foo", {}, ("'foo' is not key=value",)),
    ("report-not-a-study", "report {w}/one_class", {}, ("one_class",)),
]


def _digits(root, classes, per_class):
    d = load_digits()
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(d.images[d.target == int(c)][:per_class]):
            Image.fromarray((img * 15).astype(np.uint8)).save(root / c / f"{i}.png")


def _saved_model(folder):
    """A model folder as --save-best writes it: the demo MLP with a head for digits 5-9 (untrained is enough here)."""
    from types import SimpleNamespace

    from transferlab import zoo
    from transferlab.data.builtin import digits_target
    from transferlab.saving import save_model

    backbone = zoo.pretrained("mlp").clone()
    backbone.replace_head(5)
    save_model(SimpleNamespace(model=backbone), backbone, folder, digits_target().class_names, "scratch", {})


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    w = tmp_path_factory.mktemp("bad")
    (w / "a-file.txt").write_text("not a folder")
    (w / "t.csv").write_text("a,b,target\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(40)))
    (w / "nan.csv").write_text("a,b,label\n" + "".join(f"{i},{'' if i == 7 else i % 3},{i % 2}\n" for i in range(40)))
    (w / "empty.csv").write_text("")
    (w / "one_class.csv").write_text("a,b,label\n" + "".join(f"{i},{i % 3},0\n" for i in range(40)))
    (w / "numbers.csv").write_text("text,label\n" + "".join(f"{i * 1.5},{i % 2}\n" for i in range(40)))
    (w / "fake.npz").write_bytes(b"not a zip")
    x = np.random.default_rng(0).random((40, 64)).astype(np.float32)
    x[3, 5] = np.nan
    np.savez(w / "nan.npz", X=x, y=np.arange(40) % 2)
    _digits(w / "one_class", ("5",), 12)
    _digits(w / "empty_class", ("5", "6"), 12)
    (w / "empty_class" / "7").mkdir()
    _digits(w / "corrupt", ("5", "6"), 4)
    for i in range(5):
        (w / "corrupt" / "5" / f"bad{i}.jpg").write_bytes(b"garbage")
    _digits(w / "extra_test" / "train", ("5", "6"), 12)
    _digits(w / "extra_test" / "test", ("5", "6", "7"), 12)
    (w / "truncated.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    (w / "garbage.pt").write_bytes(b"\x80\x04 definitely not a state dict")
    (w / "bad.toml").write_text("[study\nseeds = 3\n")
    (w / "unknown.toml").write_text('[model]\nspec = "demo:cnn"\n[data]\nspec = "demo:digits"\n[study]\nsedes = 3\n')
    head = '[model]\nspec = "demo:cnn"\n[data]\nspec = "demo:digits"\n'
    (w / "strategy_number.toml").write_text(head + "[study]\nstrategies = [1]\n")
    (w / "strategy_no_name.toml").write_text(head + "[[strategies]]\nparams = {}\n")
    (w / "workers_bool.toml").write_text(head + "[study]\nworkers = true\n")
    np.savez(w / "strings.npz", X=np.array([["a", "b"], ["c", "d"]]))
    _saved_model(w / "saved")
    rng = np.random.default_rng(1)
    feats = lambda n, d: {f"f{i}": rng.random(n) for i in range(d)}  # noqa: E731
    pd.DataFrame({**feats(40, 5), "label": np.arange(40) % 2}).to_csv(w / "five.csv", index=False)
    pd.DataFrame({"label": np.arange(40) % 2}).to_csv(w / "only.csv", index=False)
    pd.DataFrame({"id": [f"u{i}" for i in range(40)], **feats(40, 63), "label": np.arange(40) % 2}).to_csv(w / "id.csv", index=False)
    inf = pd.DataFrame({**feats(40, 64), "label": np.arange(40) % 2})
    inf.loc[3, "f2"] = np.inf
    inf.to_csv(w / "inf.csv", index=False)
    images = lambda n: rng.random((n, 1, 8, 8)).astype(np.float32)  # noqa: E731
    np.savez(w / "xy.npz", X=images(50), y=np.arange(40) % 5)
    np.savez(w / "yx.npz", X=images(40), y=np.arange(50) % 5)
    np.savez(w / "rank.npz", X=rng.random((40, 8)).astype(np.float32), y=np.arange(40) % 2)
    np.savez(w / "range.npz", X=rng.random((40, 64)).astype(np.float32), y=np.arange(40) % 7, class_names=np.array(list("abcde")))
    np.savez(w / "names.npz", X=rng.random((40, 64)).astype(np.float32), y=np.array(["cat", "dog", "eel", "cat"] * 10),
             class_names=np.array(["cat", "dog"]))
    (w / "sizes.toml").write_text('[model]\nspec = "demo:cnn"\n[data]\nspec = "demo:digits"\n[study]\nsizes = 5\n')
    return w


@pytest.mark.parametrize("args,env,words", [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_bad_input(w, tmp_path, args, env, words):
    out = tmp_path / "study-out"
    argv = shlex.split(args.format(w=w))
    if argv[0] in ("run", "demo", "layers") and "--out" not in argv:
        argv += ["--out", str(out)]
    code, _, err = invoke(*argv, env=env)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, (code, err[-2000:])
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists(), "a refused start must not leave a study folder behind"
    assert (w / "a-file.txt").read_text() == "not a folder"


def test_corpus_ids_are_distinct():
    ids = [c[0] for c in CORPUS]
    assert len(ids) == len(set(ids))


@pytest.mark.slow  # trains a small study: with the slow tests, which CI runs too
def test_default_sizes_fit_the_data(tmp_path):
    """60 images per class leave fewer than 50 per class for training: the default sizes keep those that fit and say
    which were dropped (dry run, study.json, report); a size given explicitly is still refused."""
    import json

    _digits(tmp_path / "photos", ("5", "6", "7"), 60)
    base = ("run", "--model", "demo:cnn", "--data", f"images:{tmp_path / 'photos'}")
    code, out, err = invoke(*base, "--dry-run", "--out", str(tmp_path / "s"))
    assert code == 0, err
    assert "Size 50 per class left out: more than the" in out and "Size 20" not in out
    code, _, err = invoke(*base, "--sizes", "5,50", "--out", str(tmp_path / "s"))
    assert code == 2 and "size 50 per class is more than" in err and not (tmp_path / "s").exists()
    code, _, err = invoke(*base, "--strategies", "scratch,head", "--seeds", "1", "--steps", "10", "--augment", "none",
                          "--out", str(tmp_path / "s"))
    assert code == 0, err
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert study["config"]["sizes"] == [5, 20, "all"] and [d["size"] for d in study["sizes_dropped"]] == [50]
    assert "Default sizes left out because the data cannot fill them: 50 per class" in (tmp_path / "s" / "report.html").read_text()
