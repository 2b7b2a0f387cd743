"""Referring expressions over a scene of shapes: structured expressions, their truth, their wording.

An expression is data (which attributes, which direction, which landmark) so that its meaning can be
re-evaluated against the scene at any time; the text is only a rendering of that data. Geometric
predicates are three-valued: True and False only when the scene is unambiguous by at least `margin`
pixels, None (borderline) otherwise. An expression is kept only when its referent is True and every
other object is False, so a borderline reading can never make the label disputable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KINDS: tuple[str, ...] = ("attribute", "position", "relation", "comparative", "ordinal")
SIZES: tuple[str, ...] = ("small", "large")
DIRECTIONS: tuple[str, ...] = ("left", "right", "top", "bottom")

Truth = bool | None


@dataclass(frozen=True)
class Obj:
    """One object of a scene: centre (x, y) in pixels (y grows downwards), bounding radius r."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    r: float

    @property
    def pair(self) -> tuple[str, str]:
        return (self.colour, self.shape)


def _axis(o: Obj, direction: str) -> float:
    """Coordinate that grows away from `direction` (so 'first from the left' has the smallest)."""
    return {"left": o.x, "right": -o.x, "top": o.y, "bottom": -o.y}[direction]


def _ahead(a: Obj, b: Obj, direction: str, margin: float) -> bool:
    ka, kb = _axis(a, direction), _axis(b, direction)
    # Centres apart by the margin AND both edges in the same order: every reading agrees.
    return ka + margin <= kb and ka - a.r <= kb - b.r and ka + a.r <= kb + b.r


def before(a: Obj, b: Obj, direction: str, margin: float) -> Truth:
    """Is `a` clearly nearer to `direction` than `b`? None when the order is borderline."""
    if _ahead(a, b, direction, margin):
        return True
    if _ahead(b, a, direction, margin):
        return False
    return None


RELATIONS: dict[str, str] = {"above": "top", "below": "bottom", "left of": "left", "right of": "right"}


# Angle from the relation's axis: within 35 degrees it holds, beyond 55 it does not, between is borderline.
_TAN_HOLDS, _TAN_FAILS = 0.700, 1.428


def related(o: Obj, landmark: Obj, relation: str, margin: float) -> Truth:
    """Does `o` lie on the `relation` side of `landmark` ('above': up, within 35 degrees of vertical)?"""
    direction = RELATIONS[relation]
    primary = _axis(landmark, direction) - _axis(o, direction)
    cross = abs(o.y - landmark.y) if direction in ("left", "right") else abs(o.x - landmark.x)
    if primary >= margin and cross <= _TAN_HOLDS * primary:
        return True
    return False if cross >= _TAN_FAILS * primary else None


@dataclass(frozen=True)
class Phrase:
    """A noun phrase from a subset of the referent's attributes ('small red circle', 'red shape')."""

    size: str | None = None
    colour: str | None = None
    shape: str | None = None

    def matches(self, o: Obj) -> bool:
        return ((self.size is None or o.size == self.size)
                and (self.colour is None or o.colour == self.colour)
                and (self.shape is None or o.shape == self.shape))

    @property
    def text(self) -> str:
        return " ".join(w for w in (self.size, self.colour, self.shape or "shape") if w)

    @staticmethod
    def subsets(o: Obj, with_size: bool = True) -> list[Phrase]:
        sizes = (None, o.size) if with_size else (None,)
        return [Phrase(s, c, h) for s, c, h in itertools.product(sizes, (None, o.colour), (None, o.shape))]


def _members(phrase: Phrase, objs: Sequence[Obj]) -> list[int]:
    return [j for j, o in enumerate(objs) if phrase.matches(o)]


@dataclass(frozen=True)
class Attribute:
    phrase: Phrase
    kind = "attribute"

    def truth(self, objs: Sequence[Obj], i: int, margin: float) -> Truth:
        return self.phrase.matches(objs[i])

    def text(self, wording: int) -> str:
        return f"the {self.phrase.text}"


@dataclass(frozen=True)
class Position:
    """Extreme of a phrase's members along a direction ('the leftmost square')."""

    phrase: Phrase
    direction: str
    kind = "position"
    WORDINGS = {"left": ("the leftmost {}", "the {} on the far left"),
                "right": ("the rightmost {}", "the {} on the far right"),
                "top": ("the topmost {}", "the {} at the top"),
                "bottom": ("the bottommost {}", "the {} at the bottom")}

    def truth(self, objs: Sequence[Obj], i: int, margin: float) -> Truth:
        if not self.phrase.matches(objs[i]):
            return False
        others = [j for j in _members(self.phrase, objs) if j != i]
        order = [before(objs[i], objs[j], self.direction, margin) for j in others]
        return False if False in order else None if None in order else True

    def text(self, wording: int) -> str:
        templates = self.WORDINGS[self.direction]
        return templates[wording % len(templates)].format(self.phrase.text)


@dataclass(frozen=True)
class Relation:
    """A phrase's member in a relation to a landmark named by its own phrase ('the triangle above the blue
    circle'). The landmark phrase must itself name exactly one object."""

    phrase: Phrase
    relation: str
    landmark: Phrase
    kind = "relation"
    WORDINGS = {"above": ("above",), "below": ("below",), "left of": ("to the left of", "left of"),
                "right of": ("to the right of", "right of")}

    def truth(self, objs: Sequence[Obj], i: int, margin: float) -> Truth:
        landmarks = _members(self.landmark, objs)
        if len(landmarks) != 1 or landmarks[0] == i or not self.phrase.matches(objs[i]):
            return False
        return related(objs[i], objs[landmarks[0]], self.relation, margin)

    def text(self, wording: int) -> str:
        words = self.WORDINGS[self.relation]
        return f"the {self.phrase.text} {words[wording % len(words)]} the {self.landmark.text}"


@dataclass(frozen=True)
class Comparative:
    """One of exactly two phrase members, by size or by position ('the larger green shape')."""

    phrase: Phrase
    quality: str  # "larger", "smaller", or a direction
    kind = "comparative"
    WORDINGS = {"larger": ("the larger {}", "the bigger {}"), "smaller": ("the smaller {}",),
                "top": ("the higher {}",), "bottom": ("the lower {}",),
                "left": ("the {} further left",), "right": ("the {} further right",)}

    def truth(self, objs: Sequence[Obj], i: int, margin: float) -> Truth:
        members = _members(self.phrase, objs)
        if len(members) != 2 or i not in members:
            return False
        other = objs[members[0] if members[1] == i else members[1]]
        if self.quality in ("larger", "smaller"):
            wanted = "large" if self.quality == "larger" else "small"
            return objs[i].size == wanted and other.size != wanted
        return before(objs[i], other, self.quality, margin)

    def text(self, wording: int) -> str:
        templates = self.WORDINGS[self.quality]
        return templates[wording % len(templates)].format(self.phrase.text)


ORDINALS = {2: "second", 3: "third"}


@dataclass(frozen=True)
class Ordinal:
    """The k-th phrase member counted from a side ('the second square from the left')."""

    phrase: Phrase
    rank: int
    direction: str
    kind = "ordinal"

    def truth(self, objs: Sequence[Obj], i: int, margin: float) -> Truth:
        if not self.phrase.matches(objs[i]):
            return False
        others = [j for j in _members(self.phrase, objs) if j != i]
        order = [before(objs[j], objs[i], self.direction, margin) for j in others]
        if None in order:
            return None
        return sum(order) + 1 == self.rank

    def text(self, wording: int) -> str:
        return f"the {ORDINALS[self.rank]} {self.phrase.text} from the {self.direction}"


Expression = Attribute | Position | Relation | Comparative | Ordinal


def unique_referent(expr: Expression, objs: Sequence[Obj], margin: float) -> int | None:
    """The one object the expression is clearly true of, or None (no object, several, or borderline)."""
    found = None
    for j in range(len(objs)):
        t = expr.truth(objs, j, margin)
        if t is None or (t and found is not None):
            return None
        found = j if t else found
    return found


def _candidates(kind: str, objs: Sequence[Obj], i: int) -> list[Expression]:
    """Expressions of `kind` worth trying for object i. Phrases that would name i on their own are left out of
    the geometric kinds, so that position/relation/comparative/ordinal really need their geometry."""
    ref = objs[i]
    counts = {p: len(_members(p, objs)) for p in Phrase.subsets(ref)}
    shared = [p for p, n in counts.items() if n >= 2]
    if kind == "attribute":
        return [Attribute(p) for p, n in counts.items() if n == 1 and p != Phrase()]
    if kind == "position":
        return [Position(p, d) for p in shared for d in DIRECTIONS]
    if kind == "ordinal":
        return [Ordinal(p, k, d) for p in shared for d in DIRECTIONS for k in ORDINALS if k <= counts[p]]
    if kind == "comparative":
        pairs = [p for p in Phrase.subsets(ref, with_size=False) if counts[p] == 2]
        return [Comparative(p, q) for p in pairs for q in ("larger", "smaller", *DIRECTIONS)]
    if kind == "relation":
        out: list[Expression] = []
        for j, landmark in enumerate(objs):
            names = [p for p in Phrase.subsets(landmark) if p != Phrase() and len(_members(p, objs)) == 1]
            if j != i and names:
                out += [Relation(p, r, names[0]) for p in shared for r in RELATIONS]
        return out
    raise ValueError(f"unknown expression kind {kind!r}; choose one of {KINDS}")


def propose(kind: str, objs: Sequence[Obj], i: int, margin: float,
            rng: np.random.Generator) -> tuple[Expression, str] | None:
    """A random expression of `kind` that names object i and nothing else, with its wording; None if the
    scene offers none (the caller then draws a new scene)."""
    valid = [e for e in _candidates(kind, objs, i)
             if e.truth(objs, i, margin) and unique_referent(e, objs, margin) == i]
    if not valid:
        return None
    expr = valid[rng.integers(len(valid))]
    if isinstance(expr, Comparative) and expr.quality not in ("larger", "smaller"):
        # Size comparisons are the canonical comparative; take one whenever the scene allows it.
        sized = [e for e in valid if isinstance(e, Comparative) and e.quality in ("larger", "smaller")]
        expr = sized[rng.integers(len(sized))] if sized and rng.random() < 0.6 else expr
    if isinstance(expr, Relation):
        # Any phrase that names the landmark alone will do; vary it.
        lm = objs[unique_referent(Attribute(expr.landmark), objs, margin)]
        names = [p for p in Phrase.subsets(lm) if p != Phrase() and len(_members(p, objs)) == 1]
        expr = Relation(expr.phrase, expr.relation, names[rng.integers(len(names))])
    return expr, expr.text(int(rng.integers(2)))
