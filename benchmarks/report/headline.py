"""The three sentences a leaderboard opens with: its tiers, what is resolved, and how it orders the methods the
ETRIS paper compares (Table 2: RN101 on RefCOCO val, one decoder, other PET methods)."""

from __future__ import annotations

from itertools import combinations

from benchmarks.report.statistics import SplitStats

# ETRIS Table 2, RefCOCO val mIoU (the paper labels it oIoU; its code computes mIoU): this project's method, the
# paper's name, its score. The paper's CoOp is learned text context; `prompt` adds visual prompts to it.
ETRIS_TABLE2 = (("bridger", "ETRIS", 71.06), ("full", "full tuning", 70.47), ("adapter", "Adapter", 69.46),
                ("lora", "LoRA", 68.84), ("prompt", "CoOp", 67.87), ("frozen", "frozen", 67.73))


def tiers(stats: SplitStats) -> list[list[str]]:
    """Rows grouped by tie-group rank, best group first, each in order of mean."""
    groups: dict[int, list[str]] = {}
    for label in stats.order:
        groups.setdefault(stats.ranks[label], []).append(label)
    return [groups[rank] for rank in sorted(groups)]


def _pairs(labels: list[str]) -> list[tuple[str, str]]:
    return list(combinations(labels, 2))


def sentences(stats: SplitStats) -> list[str]:
    """The opening paragraph's sentences, from the search split's statistics (no sentence for fewer than two
    rows)."""
    if len(stats.order) < 2:
        return []
    groups = tiers(stats)
    pairs = _pairs(stats.order)
    resolved = [p for p in pairs if stats.separated(*p)]
    basis = ("per-expression" if not stats.seeds_only() else "seeds-only, optimistic")
    first = (f"On {stats.split} mIoU the {len(stats.order)} methods fall into {len(groups)} tiers (a tier: the best "
             f"remaining method and every one its paired 95% interval does not separate from it): "
             + "; ".join(", ".join(group) for group in groups) + ".")
    unresolved = [f"{a} vs {b}" for a, b in pairs if (a, b) not in resolved]
    second = (f"{len(resolved)} of the {len(pairs)} method pairs are resolved ({basis} intervals exclude 0)"
              + (f"; not resolved: {_listing(unresolved)}." if unresolved else "."))
    return [first, second, _paper_order(stats)]


def _listing(items: list[str], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown if len(items) <= most else f"{shown} and {len(items) - most} more"


def _paper_order(stats: SplitStats) -> str:
    paper = [name for name, _, _ in ETRIS_TABLE2]
    common = [name for name in paper if name in stats.order]
    quoted = " > ".join(f"{title} {miou:.2f}" + ("" if title == name else f" (`{name}`)")
                        for name, title, miou in ETRIS_TABLE2)
    if len(common) < 2:
        return f"ETRIS's Table 2 orders {quoted} (RN101, RefCOCO val); fewer than two of them ran here."
    ours = sorted(common, key=stats.order.index)
    agree = [(a, b) for a, b in _pairs(common) if ours.index(a) < ours.index(b)]
    reverse = [(a, b) for a, b in _pairs(common) if ours.index(a) > ours.index(b)]

    def count(pairs: list[tuple[str, str]]) -> str:
        return f"{len(pairs)} ({sum(stats.separated(a, b) for a, b in pairs)} resolved)"

    flipped = [f"{b} above {a}" for a, b in reverse]
    return (f"ETRIS's Table 2 (RN101, RefCOCO val) orders {quoted}; here the same methods rank "
            f"{' > '.join(ours)}: of their {len(agree) + len(reverse)} pairs, {count(agree)} follow the paper's "
            f"order and {count(reverse)} are reversed" + (f" ({_listing(flipped)})." if flipped else "."))
