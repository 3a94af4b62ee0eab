"""Odd inputs that are valid must run (issue 35): string labels, an image folder mixing greyscale, RGBA, palette and
JPEG files of different sizes under paths with spaces and accents, and an empty image file, which is skipped,
counted, and named in one warning line."""
from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from tests.conftest import invoke
from transferlab.results import TrialStore

TINY = ("--seeds", "1", "--sizes", "2", "--steps", "5", "--strategies", "scratch,head", "--augment", "none")


def test_a_mixed_image_folder_with_odd_names_and_an_empty_file_runs(tmp_path):
    d = load_digits()
    root = tmp_path / "mes photos été"
    modes = ("L", "RGB", "RGBA", "P", "JPEG")
    for c in ("cinq 5", "six é"):
        (root / c).mkdir(parents=True)
        digit = 5 if c.startswith("cinq") else 6
        for i, img in enumerate(d.images[d.target == digit][:15]):
            mode = modes[i % len(modes)]
            pic = Image.fromarray((img * 15).astype(np.uint8)).resize((8 + 4 * (i % 3), 8 + 4 * (i % 3)))
            if mode == "JPEG":
                pic.convert("RGB").save(root / c / f"image {i}.jpg")
            else:
                pic.convert(mode).save(root / c / f"image {i}.png")
    (root / "cinq 5" / "vide.png").write_bytes(b"")  # an empty file: skipped, counted, named
    out = tmp_path / "étude 1"
    code, _, err = invoke("run", "--model", "demo:cnn", "--data", f"images:{root}", *TINY, "--out", str(out))
    assert code == 0, err[-2000:]
    warnings = [x for x in err.splitlines() if x.startswith("transferlab: warning:")]
    assert len(warnings) == 1 and "skipped 1 unreadable file" in warnings[0] and "vide.png" in warnings[0], err[-2000:]
    records = TrialStore(out / "trials.jsonl").load()
    assert records and all(r["status"] == "ok" for r in records if r["strategy"] != "zero_shot")


def test_string_labels_in_a_table_and_in_arrays_run(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.random((40, 64)).astype(np.float32)
    names = np.array(["chat", "chien é"] * 20)
    pd.DataFrame({**{f"f{i}": x[:, i] for i in range(64)}, "label": names}).to_csv(tmp_path / "t.csv", index=False)
    np.savez(tmp_path / "a.npz", X=x, y=names)
    for spec in (f"table:{tmp_path / 't.csv'}", f"npz:{tmp_path / 'a.npz'}"):
        out = tmp_path / spec.partition(":")[0]
        code, _, err = invoke("run", "--model", "demo:mlp", "--data", spec, *TINY, "--out", str(out))
        assert code == 0, err[-2000:]
        assert (out / "report.html").exists()
