"""One suite's leaderboard page: accuracy, precision and cost tables, trivial baselines, and its plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.report import anytime, headline, plots, qualitative
from benchmarks.report.markdown import Column, paper_ratio_column, table
from benchmarks.report.runs import (
    COST_COLUMNS,
    SPLIT_METRICS,
    aggregate,
    at_chosen_rates,
    current_budget,
    grid_edge_note,
    grid_edges,
    leaderboard_runs,
    seeds_pending,
    seeds_to_go,
)
from benchmarks.report.statistics import (
    SplitStats,
    annotate,
    basis_note,
    comparisons_table,
    metric_columns,
    selected_runs,
    stats_of,
)

PRECISIONS = ("prec@0.5", "prec@0.6", "prec@0.7", "prec@0.8", "prec@0.9")
BASELINE_TITLES = {"largest_object": "largest object (ignores the text)", "predict_all": "whole image"}


def splits_of(runs: pd.DataFrame, suite: dict[str, Any]) -> list[str]:
    """The suite's evaluation splits, in its order, that some record has results for."""
    return [s for s in suite["eval_splits"] if f"{s}/mIoU" in runs and runs[f"{s}/mIoU"].notna().any()]


def kinds_of(runs: pd.DataFrame, split: str) -> list[str]:
    prefix = f"{split}/kind/"
    return sorted(c[len(prefix):] for c in runs.columns if c.startswith(prefix))


def board(runs: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """Aggregated default-config rows, best search-split mIoU first; rows without an ok run last."""
    kinds = {s: kinds_of(runs, s) for s in splits}
    columns = [f"{s}/{m}" for s in splits for m in SPLIT_METRICS]
    columns += [f"{s}/kind/{k}" for s in splits for k in kinds[s]] + list(COST_COLUMNS)
    agg = aggregate(runs[runs["variant"] == "default"], columns)
    if agg.empty:
        return agg
    key = f"{runs['search_split'].iloc[0]}/mIoU"
    if key not in agg:  # no run has finished ok yet
        return agg.sort_values("method").reset_index(drop=True)
    return agg.sort_values([key, "method"], ascending=[False, True], na_position="last").reset_index(drop=True)


def baseline_rows(runs: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """Trivial predictors' scores (identical in every record of a budget: they do not depend on training)."""
    names = sorted({c.split("/")[0].removeprefix("baseline:") for c in runs.columns if c.startswith("baseline:")})
    rows = []
    for name in names:
        row: dict[str, Any] = {"method": f"*baseline: {BASELINE_TITLES.get(name, name)}*", "runs": "", "lr": "",
                               "baseline": name}
        for split in splits:
            for metric in SPLIT_METRICS:
                values = runs.get(f"baseline:{name}/{split}/{metric}")
                known = values.dropna() if values is not None else []
                row[f"{split}/{metric}"] = known.iloc[0] if len(known) else None
        rows.append(row)
    return pd.DataFrame(rows)


def _budget_line(suite: dict[str, Any]) -> str:
    grid = ", ".join(f"{v:g}" for v in suite["lr_grid"])
    seeds = ", ".join(str(s) for s in suite["seeds"])
    return (f"{suite['steps']} steps x batch {suite['batch_size']} ({suite['optimizer']}, {suite['schedule']} "
            f"schedule, {suite['image_size']} px, backbone {suite['backbone']}); learning rate chosen per method "
            f"from {{{grid}}} by {suite['lr_search_split']} mIoU of seed {suite['seeds'][0]}; seeds {seeds}.")


def profiled(profiles: list[dict[str, Any]], suite: dict[str, Any]) -> pd.DataFrame:
    """Side-by-side measurements from a `profile` document of this suite at its image and batch size:
    every method timed in one process, interleaved, so their ratios survive a noisy machine (the sweep's own
    wall times do not when other work shares the cores)."""
    rows = [{"method": row["method"], "profiled_train_ips": (row.get("throughput") or {}).get("train_images_per_s"),
             "profiled_infer_ips": (row.get("throughput") or {}).get("infer_images_per_s"),
             "profiled_train_mb": (row.get("memory") or {}).get("train_peak_mb"),
             "profiled_device": row.get("device")}
            for document in profiles if document.get("suite") == suite["name"] for row in document["rows"]
            if row.get("image_size") == suite["image_size"] and row.get("batch_size") == suite["batch_size"]
            and row.get("throughput")]
    return pd.DataFrame(rows).drop_duplicates("method", keep="last") if rows else pd.DataFrame()


def page(suite_name: str, runs_all: pd.DataFrame, suite: dict[str, Any],
         profiles: list[dict[str, Any]] = ()) -> tuple[str, dict[str, bytes]]:
    """The markdown page and its figures (file name -> PNG bytes) for one suite."""
    # only this suite's metric columns: another suite's splits or kinds must not show up as empty columns
    runs_all = runs_all.drop(columns=[c for c in runs_all if "/" in c and runs_all[c].isna().all()])
    budget = current_budget(runs_all)
    runs = leaderboard_runs(budget)
    splits = splits_of(runs, suite)
    rows = board(runs, splits)
    search = suite["lr_search_split"]
    lines = [f"# Leaderboard: `{suite_name}`", "", suite.get("description", ""), ""]
    figures: dict[str, bytes] = {}
    if rows.empty:
        lines += [f"Budget: {_budget_line(suite)}", "", *_provenance(budget[~budget["off_budget"]], runs_all),
                  "", "No run records for this suite yet.", ""]
        return "\n".join(lines), figures
    defaults = runs[runs["variant"] == "default"]
    groups = dict(tuple(defaults.groupby("method")))
    selected = {split: selected_runs(groups, split) for split in splits}  # once per method and split
    pending = seeds_pending(groups, suite["seeds"])
    stats = [stats_of(selected[split], split, frozenset(pending)) for split in splits]
    rows = annotate(rows, "method", stats)
    secondary = [(split, "oIoU") for split in splits] + [(search, p) for p in PRECISIONS if search in splits]
    rows = rows.merge(metric_columns(selected, "method", secondary), on="method", how="left")
    opening = headline.sentences(next(one for one in stats if one.split == search)) if search in splits else []
    lines += [" ".join(opening), ""] if opening else []
    lines += [f"Budget: {_budget_line(suite)}", "", *_provenance(budget[~budget["off_budget"]], runs_all)]
    lines += ["", f"mIoU: mean over seeds at the chosen learning rate [95% confidence interval]. `rank`: tie groups "
              f"on {search} mIoU: the best method and every method whose paired difference to it has an interval "
              f"covering 0 share rank 1, and so on down. Bold: significantly best, i.e. alone in the first tie "
              f"group of that split on per-expression intervals. oIoU and Prec@X: mean over seeds [95% interval from "
              f"the same bootstrap; oIoU resamples intersections and unions together, as the ratio of their sums], "
              f"not tested for ties and never bold. `runs` counts every run of a row by status "
              f"(failed or diverged runs are listed; only "
              f"`ok` runs enter the statistics). Sorted by {search} mIoU.", "", basis_note(stats, "methods"), ""]
    if pending:
        waiting = "; ".join(f"{method} ({seeds_to_go(seeds)})"
                            for method, seeds in sorted(pending.items()))
        lines += [f"Not ranked or compared until every seed of the suite has run: {waiting}. Such a row's interval "
                  "rests on the seeds it has.", ""]

    accuracy = [Column("method", "method", left=True), Column("runs", "runs", left=True),
                Column("lr", "lr", general=True), Column(f"{search}/rank", "rank", digits=0)]
    for split in splits:
        accuracy += [Column(f"{split}/mIoU", f"{split} mIoU", interval=True, bold_if=f"{split}/mIoU:best"),
                     Column(f"{split}/oIoU", f"{split} oIoU", interval=True)]
    base = baseline_rows(runs, splits)
    both = pd.concat([rows, base], ignore_index=True)
    ranked = [True] * len(rows) + [False] * len(base)
    lines += ["## Accuracy (%)", "", table(both, accuracy, rank_rows=ranked), *grid_edge_note(grid_edges(groups))]

    lines += _comparisons(next(one for one in stats if one.split == search) if search in splits else None)

    precision = [Column("method", "method", left=True)]
    precision += [Column(f"{search}/{p}", p.replace("prec", "Prec"), interval=True) for p in PRECISIONS]
    lines += [f"## Precision at IoU thresholds on {search} (%)", "", table(both, precision, rank_rows=ranked)]

    cost = [Column("method", "method", left=True),
            Column("trainable", "trainable params", digits=0, best="min", thousands=True),
            Column("ratio_trainable", "trainable / total (%)", digits=2, scale=100, best="min"),
            Column("ratio_added", "added / CLIP (%)", digits=2, scale=100),
            *paper_ratio_column(rows),
            Column("gflops_per_image", "inference GFLOPs / image", digits=3, best="min"),
            Column("train_gflops_per_image", "training GFLOPs / image", digits=3, best="min"),
            Column("peak_memory_train_mb", "peak train memory (MB)", digits=0, best="min", with_std=True),
            Column("train_seconds", "train time (s)", digits=0, best="min", with_std=True),
            Column("images_per_second", "train images / s", digits=0, best="max", with_std=True)]
    lines += ["## Cost", "", f"Memory is {_memory_caption(runs)}; FLOPs are 2 x multiply-adds (fvcore with the "
              "handles it lacks); `added / CLIP` is the paper's ratio (new parameters over the whole CLIP). Train "
              "time and images/s are each run's own wall clock: comparable only when nothing else shared the "
              "machine.", ""]
    lines += _flop_rules_caption(runs, rows)
    side_by_side = profiled(list(profiles), suite)
    if len(side_by_side):
        rows = rows.merge(side_by_side, on="method", how="left")
        cost += [Column("profiled_train_ips", "profiled train images / s", digits=0, best="max"),
                 Column("profiled_infer_ips", "profiled inference images / s", digits=0, best="max")]
        lines += [f"`profiled` columns: `nox -s profile -- --suite {suite_name}` timed every method side by side "
                  f"in one process at batch {suite['batch_size']} on "
                  f"{side_by_side['profiled_device'].iloc[0]} (median of repeated rounds).", ""]
    cap = _memory_cap(runs, rows)
    if cap is not None:
        rows = rows.merge(cap[1], on="method", how="left")
        cost.append(Column("memory cap", f"memory cap {cap[0]:g} GB", left=True))
        lines += [_memory_cap_caption(runs, cap), ""]
    lines += [table(rows, cost)]
    lines += _anytime_section(runs, rows, suite, figures)

    failed = runs[runs["status"] != "ok"].sort_values(["method", "variant", "seed"])
    if len(failed):
        listing = failed.assign(error=failed["error"].fillna("").map(lambda e: e.splitlines()[0][:160] if e else ""),
                                file=failed["path"].map(lambda p: f"`{Path(p).name}`"))
        lines += ["## Runs that did not finish ok", "", table(listing, [
            Column("method", "method", left=True), Column("variant", "variant", left=True),
            Column("seed", "seed", digits=0), Column("lr", "lr", general=True), Column("status", "status", left=True),
            Column("error", "error", left=True), Column("file", "record", left=True)])]

    figures["accuracy_vs_cost.png"] = plots.accuracy_vs_cost(
        rows.assign(added_pct=rows["ratio_added"] * 100), f"{search}/mIoU", f"{search} mIoU (%)",
        [("added_pct", "added parameters / CLIP (%, symmetric log scale)", True),
         ("peak_memory_train_mb", "peak training memory (MB)", False)],
        _baseline_levels(base, search))
    curves = _curves(runs)
    if not curves.empty:
        figures["training_curves.png"] = plots.training_curves(curves)
    kinds = kinds_of(runs, search)
    heat = rows.set_index("method")[[f"{search}/kind/{k}" for k in kinds]].dropna(how="all")
    if not heat.empty:
        heat.columns = kinds
        figures["per_kind.png"] = plots.kind_heatmap(heat, f"{search} mIoU by expression kind (mean over seeds)")
    lines += ["## Plots", ""]
    masks = qualitative.section(at_chosen_rates(budget, runs), list(rows["method"]), suite, search, figures)
    captions = {"accuracy_vs_cost.png": "Methods ranked by accuracy, then accuracy against the parameters a method "
                "adds to CLIP (the paper's measure; full fine-tuning and the frozen floor add none and sit at 0) and "
                "peak memory; error bars are 95% intervals, the dashed line the Pareto front, dotted lines the "
                "trivial baselines.",
                "anytime.png": "Evaluation mIoU during training against cumulative training FLOPs and training "
                "time: mean over seeds, band ± one standard deviation.",
                "training_curves.png": "Training loss: mean over seeds, band ± one standard deviation.",
                "per_kind.png": "mIoU per expression kind: which kinds of language each method handles.",
                "qualitative.png": "Predicted masks of the same expressions, methods in leaderboard order. "
                + " ".join(line for line in masks if line)}
    for name in sorted(figures, key=list(captions).index):
        lines += [f"![{name}]({name})", "", captions[name], ""]
    if "qualitative.png" not in figures:
        lines += masks
    return "\n".join(lines), figures


def _comparisons(stats: SplitStats | None) -> list[str]:
    """Each method against the leader and against its neighbour above in the ranking, paired."""
    if stats is None or len(stats.order) < 2:
        return []
    pairs = comparisons_table(stats)
    pairs["paired on"] = [_paired_on(row) for _, row in pairs.iterrows()]
    leader = stats.order[0]
    columns = [Column("label", "method", left=True), Column("rank", "rank", digits=0),
               Column("leader:diff", f"minus {leader}", interval=True),
               Column("leader:poi", f"P(better than {leader})"), Column("wins", "seeds won", left=True),
               Column("above:other", "neighbour above", left=True),
               Column("above:diff", "minus neighbour", interval=True),
               Column("above:poi", "P(better than neighbour)"), Column("paired on", "paired on", left=True)]
    return [f"## Paired comparisons on {stats.split}", "",
            f"{stats.split} mIoU differences (points) on the seeds and expressions both methods share, with 95% "
            "intervals; P(better) is the probability of improvement: the chance that the method scores higher "
            "than the other on a random shared seed and expression (ties count half; on seeds alone for records "
            "without per-expression data). An interval covering 0 is a tie.", "", table(pairs, columns)]


def _paired_on(row: pd.Series) -> str:
    seeds, expressions = row.get("leader:seeds"), row.get("leader:expressions")
    if pd.isna(seeds):
        return "no shared ok seed"
    if expressions == 1:
        return f"{int(seeds)} seeds (no per-expression data)"
    return f"{int(seeds)} seeds x {int(expressions)} expressions"


def _memory_cap(runs: pd.DataFrame, rows: pd.DataFrame) -> tuple[float, pd.DataFrame] | None:
    """(cap in GB, per method 'within' / 'over in k of n runs'), when the suite set a cap."""
    caps = runs["memory_cap_gb"].dropna() if "memory_cap_gb" in runs else pd.Series(dtype=float)
    if caps.empty:
        return None
    marks = []
    for method in rows["method"]:
        mine = runs[(runs["method"] == method) & (runs["variant"] == "default") & runs["status"].isin(["ok", "oom"])]
        over = int((mine["over_memory_cap"].eq(True) | mine["status"].eq("oom")).sum())
        marks.append({"method": method, "memory cap": f"**over in {over} of {len(mine)} runs**" if over else "within"})
    return float(caps.max()), pd.DataFrame(marks)


def _memory_cap_caption(runs: pd.DataFrame, cap: tuple[float, pd.DataFrame]) -> str:
    over = [m for m, mark in zip(cap[1]["method"], cap[1]["memory cap"], strict=True) if mark != "within"]
    cuda = runs["memory_kind"].eq("cuda_max_allocated").any()
    where = ("enforced on CUDA (a run that needs more ends as `oom`)" if cuda
             else "not enforceable on CPU: the measured peak is compared with it")
    verdict = f"over it: {', '.join(over)}" if over else "every method stayed within it"
    return f"Memory cap {cap[0]:g} GB, {where}; {verdict}."


def _anytime_section(runs: pd.DataFrame, rows: pd.DataFrame, suite: dict[str, Any],
                     figures: dict[str, bytes]) -> list[str]:
    """Anytime curves (figure) and the compute-matched table, or why there are none."""
    lines = ["## Accuracy at equal training compute", ""]
    points = anytime.points(runs)
    curves = anytime.mean_curves(points)
    if not curves:
        return lines + ["No anytime curves: these records predate evaluation during training (suite keys "
                        "`eval_every`, `anytime_limit`), so only the equal-steps tables above exist.", ""]
    split = runs["anytime_split"].dropna().iloc[0]
    figures["anytime.png"] = plots.anytime_curves(points, split)
    table_rows, named = anytime.matched_table(curves, list(rows["method"]))
    columns = [Column("method", "method", left=True),
               Column("gflops", "training GFLOPs per run", digits=0, thousands=True),
               Column("end", "equal steps (end of run)")]
    columns += [Column(f"budget{k}", f"at {name} ({gflops:,.0f} GFLOPs)") for k, (name, gflops) in enumerate(named)]
    sizes = sorted(runs["anytime_expressions"].dropna().astype(int).unique())  # one size for a suite's runs
    subset = f"the first {' or '.join(map(str, sizes))}" if sizes else "a fixed subset of"
    return lines + [
        f"Every method trains the same steps x batch, but not at the same cost per step. Each run scored {subset} "
        f"{split} expressions every "
        f"{suite.get('eval_every') or max(1, suite['steps'] // 10)} steps; the table reads each "
        f"method's mean-over-seeds curve ({split} mIoU on that subset, %) at the same cumulative training FLOPs, "
        "interpolated between evaluations. `*`: the run ended below that budget; its last value is shown. `–`: "
        "the budget lies before the method's first evaluation.", "", table(table_rows, columns)]


def _baseline_levels(base: pd.DataFrame, split: str) -> list[tuple[float, str]]:
    """The trivial baselines worth drawing as a level (the whole-image one sits near zero)."""
    levels = []
    for _, row in base.iterrows():
        if row["baseline"] != "predict_all" and pd.notna(row.get(f"{split}/mIoU")):
            title = BASELINE_TITLES.get(row["baseline"], row["baseline"])
            levels.append((float(row[f"{split}/mIoU"]), f"baseline: {title}"))
    return levels


def _flop_rules_caption(runs: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """A warning when the tabled runs' FLOPs were counted under different rules (records' cost.flop_convention):
    their training GFLOPs then differ by the rule as well as by the method."""
    shown = runs[(runs["status"] == "ok") & runs["method"].isin(rows["method"])]
    rules = shown["flop_convention"].dropna().unique()
    if len(rules) < 2:
        return []
    return [f"Training GFLOPs below come from records counted under {len(rules)} different rules (each record's "
            "`cost.flop_convention`; the older rule counted fused attention's recomputation, about 1% more on "
            "this suite): compare them across methods only under one rule.", ""]


def _memory_caption(runs: pd.DataFrame) -> str:
    kinds = {"cpu_process_peak_rss": "the process peak RSS on CPU", "cuda_max_allocated": "peak allocated on the GPU"}
    shown = [kinds.get(k, k) for k in sorted(runs["memory_kind"].dropna().unique())]
    text = " or ".join(shown) if shown else "not recorded"
    parallel = int((runs["world_size"].fillna(1) > 1).sum())
    if len(shown) > 1:
        text += " (the runs differ in kind: compare rows with care)"
    if parallel:
        text += f"; {parallel} runs trained data-parallel, their memory is one process's"
    return text


def _provenance(on_budget: pd.DataFrame, runs_all: pd.DataFrame) -> list[str]:
    runs = on_budget[on_budget["suite_seed"]]
    if runs.empty:
        return [f"No on-budget run records of the suite's seeds; {len(runs_all)} off-budget, other-seed or older "
                "ones are not in the tables."]
    seconds = runs["train_seconds"].fillna(0).sum()
    seconds += sum(runs[c].fillna(0).sum() for c in runs.columns if c.endswith("/eval_seconds"))
    devices = ", ".join(sorted(runs["device"].unique()))
    shas = ", ".join(sorted(s[:8] for s in runs["git_sha"].dropna().unique()))
    lines = [f"{len(runs)} run records (learning-rate search and ablations included) on {devices}, code {shas}; "
             f"their training and evaluation took {seconds / 3600:.2f} h in total."]
    off = int(runs_all["off_budget"].sum())
    if off:
        lines.append(f"{off} off-budget runs (budget settings overridden) are not in the tables.")
    other_seeds = on_budget[~on_budget["suite_seed"]]
    if len(other_seeds):
        seeds = ", ".join(str(s) for s in sorted(other_seeds["seed"].unique()))
        lines.append(f"{len(other_seeds)} runs of seeds outside the suite's seeds ({seeds}) are not in the tables.")
    older = int((~runs_all["off_budget"] & (runs_all["budget"] != runs["budget"].iloc[0])).sum())
    if older:
        lines.append(f"{older} records made under earlier settings of this suite are not in the tables.")
    return lines


def _curves(runs: pd.DataFrame) -> pd.DataFrame:
    ok = runs[(runs["status"] == "ok") & (runs["variant"] == "default")]
    points = [{"method": row["method"], "seed": row["seed"], "step": p["step"], "loss": p["loss"]}
              for _, row in ok.iterrows() for p in row["curve"]]
    return pd.DataFrame(points, columns=["method", "seed", "step", "loss"])


def suite_settings(runs: pd.DataFrame, records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The suite settings recorded in the newest record of the current budget."""
    latest = current_budget(runs).sort_values(["started_at", "path"], kind="stable").iloc[-1]["path"]
    return json.loads(json.dumps(records[latest]["run_info"]["config"]["suite"]))
