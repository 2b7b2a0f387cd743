"""The three sentences a leaderboard opens with: its tiers, what is resolved, and how it orders the methods the
ETRIS paper compares (Table 2: RN101 on RefCOCO val, one decoder, other PET methods)."""

from __future__ import annotations

from itertools import combinations

from benchmarks.paper_tables import TABLES
from benchmarks.report.statistics import SplitStats


def paper_order() -> list[tuple[str, str, float]]:
    """(method, the paper's name, its RefCOCO val mIoU) for ETRIS's Table 2 rows that are a method at its
    defaults (so a leaderboard row), best first. The paper labels the metric oIoU; its code computes mIoU."""
    table = TABLES[2]
    score = table.columns.index("IoU")
    rows = [(row.method, row.label, row.paper[score]) for row in table.rows if not row.options]
    return sorted(rows, key=lambda r: -r[2])


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
    published = paper_order()
    common = [name for name, _, _ in published if name in stats.order]
    quoted = " > ".join(f"{title} {miou:.2f}" + ("" if title == name else f" (`{name}`)")
                        for name, title, miou in published)
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
