"""The short table `bench` prints after a run."""

from __future__ import annotations

from typing import Any

import pandas as pd

METRIC_COLUMNS = ("mIoU", "oIoU", "prec@0.5", "prec@0.7", "prec@0.9")


def summary_table(record: dict[str, Any], results: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per (split, predictor): the method (its `results`, default the record's), then the trivial
    baselines for the same split."""
    rows = []
    for split, metrics in (record["results"] if results is None else results).items():
        rows.append({"split": split, "predictor": record["run_info"]["method"],
                     **{k: metrics.get(k) for k in METRIC_COLUMNS}})
        for name, base in record.get("baselines", {}).get(split, {}).items():
            rows.append({"split": split, "predictor": f"baseline:{name}", **{k: base.get(k) for k in METRIC_COLUMNS}})
    return pd.DataFrame(rows, columns=["split", "predictor", *METRIC_COLUMNS])


def table_text(record: dict[str, Any], results: dict[str, Any] | None = None) -> str:
    """summary_table as printed."""
    return summary_table(record, results).to_string(index=False, float_format=lambda v: f"{v:.2f}")


def print_summary(record: dict[str, Any]) -> None:
    info, train, cost = record["run_info"], record["train_info"], record["cost"]
    print(f"\n{info['method']} on {info['suite']} (seed {info['seed']}, lr {info['lr']:g}): {info['status']}"
          + (f" - {info['error']}" if info["error"] else ""))
    if record["results"]:
        print(table_text(record))
    selection = record.get("selection")
    if selection:
        print(f"selected checkpoint: step {selection['step']} of {train['steps_done']}, {selection['split']} mIoU "
              f"{selection['score']:.2f} on {selection['expressions']} expressions (the table above: the last "
              "step); its metrics:")
        print(table_text({**record, "baselines": {}}, selection["results"]))
    params = cost.get("params")
    if params:
        print(f"trainable {params['trainable']:,} / {params['total']:,} params "
              f"({100 * params['ratio_trainable']:.2f}%); added {params['added']:,} "
              f"({100 * params['ratio_added']:.2f}% of CLIP"
              + (f", {100 * params['ratio_paper']:.2f}% of its image tower at 224 px" if "ratio_paper" in params
                 else "") + ")")
    if cost.get("gflops_per_image") is not None:
        print(f"inference {cost['gflops_per_image']:.3f} GFLOPs per image, training "
              f"{cost['train_gflops_per_image']:.3f} GFLOPs per image (2 x multiply-adds)")
    if train["train_seconds"]:
        print(f"train {train['train_seconds']:.1f} s for {train['steps_done']} steps "
              f"({train['images_per_second']:.0f} img/s), peak memory {cost['peak_memory_train_mb']:.0f} MB "
              f"({cost['memory_kind']})")
