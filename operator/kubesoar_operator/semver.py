"""Semantic versions and ranges, for `ref.semver` (tags like `v1.4.2`).

Range syntax follows the Masterminds constraints Flux accepts, minus the
rarely used parts: comparators `= != > >= < <=`, caret `^1.2`, tilde `~1.2.3`,
wildcards `1.x`, `1.2.*`, `*`, comparators joined by spaces or commas (and), and
alternatives joined by `||` (or). Pre-release tags are only chosen when the
range itself names a pre-release.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z.-]+)?$"
)
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?$")
_COMPARATOR = re.compile(r"^(>=|<=|!=|=|>|<|\^|~)?\s*(\S+)$")


@dataclass(frozen=True, order=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    def key(self) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
        # A release sorts above its pre-releases; numeric identifiers below alphanumeric.
        pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: Version) -> bool:
        return self.key() < other.key()

    def __le__(self, other: Version) -> bool:
        return self.key() <= other.key()


def parse_version(text: str) -> Version | None:
    """A version from a tag name, or None when the tag is not one."""
    m = _VERSION.match(text.strip())
    if not m:
        return None
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    return Version(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)


Predicate = Callable[[Version], bool]


@dataclass(frozen=True)
class Range:
    alternatives: tuple[tuple[Predicate, ...], ...]
    allows_prerelease: bool

    def matches(self, version: Version) -> bool:
        if version.prerelease and not self.allows_prerelease:
            return False
        return any(all(p(version) for p in preds) for preds in self.alternatives)

    def best(self, versions: Iterable[Version]) -> Version | None:
        candidates = [v for v in versions if self.matches(v)]
        return max(candidates, key=Version.key) if candidates else None


def _bounds(op: str, operand: str) -> tuple[Predicate, ...]:
    m = _PARTIAL.match(operand)
    if not m:
        raise ValueError(f"invalid version {operand!r} in semver range")
    parts = [m.group(i) for i in (1, 2, 3)]
    pre = tuple(m.group(4).split(".")) if m.group(4) else ()
    wild = [p is None or p in {"x", "X", "*"} for p in parts]
    nums = [0 if w else int(p) for p, w in zip(parts, wild, strict=True)]
    # How many leading components are fixed: 1.2 -> 2, 1.x -> 1, * -> 0.
    fixed = next((i for i, w in enumerate(wild) if w), 3)
    low = Version(nums[0], nums[1], nums[2], pre)

    def upper(level: int) -> Version:
        # The first version past the fixed prefix of length `level`.
        if level <= 0:
            return Version(1 << 62, 0, 0)
        if level == 1:
            return Version(nums[0] + 1, 0, 0, ("0",))
        return Version(nums[0], nums[1] + 1, 0, ("0",))

    def ge(v: Version) -> Callable[[Version], bool]:
        return lambda x: v <= x

    def lt(v: Version) -> Callable[[Version], bool]:
        return lambda x: x < v

    if op in {"", "="}:
        if fixed == 3:
            return (lambda x: x.key() == low.key(),)
        return (ge(low), lt(upper(fixed)))
    if op == "!=":
        return (lambda x: x.key() != low.key(),)
    if op == ">=":
        return (ge(low),)
    if op == "<":
        return (lt(low),)
    if op == ">":
        return (lambda x: not x <= low,) if fixed == 3 else (ge(upper(fixed)),)
    if op == "<=":
        return (lambda x: x <= low,) if fixed == 3 else (lt(upper(fixed)),)
    if op == "~":
        return (ge(low), lt(upper(max(2, fixed) if fixed >= 2 else fixed)))
    # caret: allow changes that do not modify the left-most non-zero component.
    if nums[0] > 0 or fixed <= 1:
        return (ge(low), lt(upper(1 if fixed >= 1 else 0)))
    if nums[1] > 0 or fixed == 2:
        return (ge(low), lt(upper(2)))
    return (ge(low), lt(Version(0, 0, nums[2] + 1, ("0",))))


def parse_range(text: str) -> Range:
    """Parse a range; raises ValueError saying what is wrong."""
    if not text.strip():
        raise ValueError("empty semver range")
    alternatives = []
    for alt in text.split("||"):
        # Join `>= 1.2` into one token, then split on spaces and commas.
        tokens = re.sub(r"(>=|<=|!=|=|>|<|\^|~)\s+", r"\1", alt.strip()).replace(",", " ").split()
        if not tokens:
            raise ValueError(f"empty alternative in semver range {text!r}")
        preds: list[Predicate] = []
        for token in tokens:
            m = _COMPARATOR.match(token)
            if not m:
                raise ValueError(f"invalid comparator {token!r} in semver range")
            preds.extend(_bounds(m.group(1) or "", m.group(2)))
        alternatives.append(tuple(preds))
    return Range(tuple(alternatives), allows_prerelease="-" in text)


def highest_matching(range_text: str, tags: Iterable[str]) -> str | None:
    """The tag whose version is the highest one the range admits."""
    rng = parse_range(range_text)
    by_version: dict[tuple[object, ...], tuple[Version, str]] = {}
    for tag in tags:
        version = parse_version(tag)
        if version is not None and rng.matches(version):
            # Prefer the tag spelled exactly as the version if both `v1` and `1` exist.
            by_version.setdefault(version.key(), (version, tag))
    if not by_version:
        return None
    best_key = max(by_version, key=lambda k: by_version[k][0].key())
    return by_version[best_key][1]
