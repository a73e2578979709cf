"""Near-duplicate groups: the images under a key prefix that are the same photo (re-encoded,
resized, cropped a little, mirrored), by the cosine of their embeddings (db/similar.py's
NEAR_DUPLICATE, measured by benchmarks/near_duplicates.py). Two images are linked when one is
among the other's nearest neighbours above the threshold; a group is what links connect."""

from __future__ import annotations

from dataclasses import dataclass, field

from db.similar import NEAR_DUPLICATE, SimilarIndex

MAX_KEYS = 5_000  # images a request may group (batched searches of 500; more: narrow the prefix)


@dataclass
class Groups:
    prefix: str
    threshold: float
    images: int  # indexed images under the prefix
    groups: list[list[str]] = field(default_factory=list)  # largest first, each sorted
    truncated: bool = False  # more than MAX_KEYS images: the first MAX_KEYS were grouped

    @property
    def grouped(self) -> int:
        """Images that were grouped: all of them, or the first MAX_KEYS."""
        return min(self.images, MAX_KEYS)

    @property
    def duplicates(self) -> int:
        """Images that are a copy of another (a group of n holds n - 1)."""
        return sum(len(g) - 1 for g in self.groups)

    def as_dict(self) -> dict:
        return {
            "prefix": self.prefix,
            "threshold": self.threshold,
            "images": self.images,
            "groups": len(self.groups),
            "duplicates": self.duplicates,
            "truncated": self.truncated,
            "members": self.groups,
        }


def near_duplicates(index: SimilarIndex, prefix: str, threshold: float = NEAR_DUPLICATE, k: int = 10) -> Groups:
    keys = index.keys_with_prefix(prefix)
    scanned = keys[:MAX_KEYS]
    parent = {key: key for key in scanned}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for key, neighbours in index.neighbours_of(scanned, k).items():
        for n in neighbours:
            if n.score >= threshold and n.image_key in parent:
                a, b = root(key), root(n.image_key)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for key in scanned:
        members.setdefault(root(key), []).append(key)
    groups = sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    return Groups(prefix, threshold, len(keys), groups, len(keys) > MAX_KEYS)
