"""``transferlab layers``: Yosinski's splice curves, AnB / AnB+ from the pretrained model (A) and
BnB / BnB+ from a copy of the architecture trained on the target itself (B)."""
from __future__ import annotations

import json
from pathlib import Path

from transferlab.backbones.base import Backbone
from transferlab.cache import FeatureCache
from transferlab.config import StudyConfig
from transferlab.data.base import TargetData
from transferlab.execution import as_target, prepare, validate
from transferlab.results import TrialSpec, write_json_atomic
from transferlab.trial import run_trial

CURVES = {("A", False): "AnB", ("A", True): "AnB+", ("B", False): "BnB", ("B", True): "BnB+"}


def run_layers(model: Backbone, data: TargetData, config: StudyConfig | None = None, out: str | Path | None = None,
               on_record=None) -> dict:
    """Splice curves at every cut 1..n-1, for each seed, at the largest target size of ``config``."""
    config = config or StudyConfig()
    data = as_target(data)
    validate(config, model, data)
    data = prepare(data, model)
    size = config.sizes[-1]
    seeds = config.seeds if not config.sequential else list(range(config.first_seeds))  # splice curves: a fixed design
    base_seed = seeds[0]
    # B: the same architecture trained from scratch on the target (its test score is the baseline).
    kept: list = []
    base = run_trial(TrialSpec("scratch", {}, base_seed, size), model, "A", data, config.budget, keep=kept)
    nets = {"A": model, "B": kept[0].model}
    records = [{"curve": "base B", "n": model.n_blocks, "seed": base_seed, "test_acc": base.test_acc}]
    for source, net in nets.items():
        cache = FeatureCache(config.budget.eval_batch_size) if config.cache else None
        key = f"layers-{source}-{net.fingerprint()}"
        for n in range(1, model.n_blocks):
            for tune in (False, True):
                for seed in seeds:
                    spec = TrialSpec("splice", {"n": n, "tune": tune}, seed, size)
                    rec = run_trial(spec, net, key, data, config.budget, cache)
                    row = {"curve": CURVES[(source, tune)], "n": n, "seed": seed, "test_acc": rec.test_acc,
                           "status": rec.status}
                    records.append(row)
                    if on_record:
                        on_record(row)
    result = {"n_train": size, "blocks": model.block_names, "records": records}
    if out:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "layers.json", result)
    return result


def load_layers(folder: str | Path) -> dict | None:
    path = Path(folder) / "layers.json"
    return json.loads(path.read_text()) if path.exists() else None
