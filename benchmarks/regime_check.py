"""Train one run of the default regime and print its key figures as one JSON line (reports/REGIME.md).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regime_check.py 32 0 mask          # d seed variant
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/regime_check.py 64 0 mask eta=0.3  # with overrides (JSON values)

Variants as in fdcheck.sweep: mask (RandomMask, bias schedule), none (no augmentation, b = 0), none_schedule
(no augmentation, bias schedule), supervised (linear head on z, bias schedule). The configuration is
``ModelConfig.scaled(d, seed=seed, **variant, **overrides)``; measurements use fdcheck.metrics.measure_all with the
run's evaluation stream (the seeds contract).
"""

from __future__ import annotations

import json
import sys
import time

from fdcheck.config import ModelConfig
from fdcheck.metrics import measure_all
from fdcheck.train import make_model, train

VARIANTS = {"mask": dict(augment="mask", bias="schedule"), "none": dict(augment="none", bias="none"),
            "none_schedule": dict(augment="none", bias="schedule"),
            "supervised": dict(augment="supervised", bias="schedule")}
KEYS = ("top_atom_share", "atom_coverage", "cos_fx_fxi", "cos_fx_fMz", "probe_reg_mse_features",
        "probe_reg_mse_raw", "probe_reg_mse_Mtx", "probe_cls_acc_features", "probe_cls_acc_raw",
        "peer_bestcos_median", "dead_neuron_frac")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[2] not in VARIANTS:
        print(__doc__, file=sys.stderr)
        return 2
    d, seed, variant = int(argv[0]), int(argv[1]), argv[2]
    overrides = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in argv[3:])}
    config = ModelConfig.scaled(d, seed=seed, **VARIANTS[variant], **overrides)
    t0 = time.perf_counter()
    result = train(config, progress=False)
    train_s = time.perf_counter() - t0
    model, rngs = make_model(config, M=result.M)
    t0 = time.perf_counter()
    metrics = measure_all(result.W, result.b, result.W0, model, config, rngs["eval"], head=result.head)
    out = {"d": d, "seed": seed, "variant": variant, "over": overrides, "steps": config.steps,
           "train_s": round(train_s, 1), "measure_s": round(time.perf_counter() - t0, 1),
           **{k: round(metrics[k], 3) for k in KEYS}}
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
