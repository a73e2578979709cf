"""Registering a version, whatever made it (`fit`, `fit --init-from`, `map`): its files go to
S3 and its row into `models` under the registry's lock on the name, so two commands of one
name never get the same version, and a version's folder is never overwritten."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from common import artefacts
from db import registry
from db.connection import connect
from settings import Settings

# every kind is served on the base trunk, so every version is preprocessed as the workers do
PREPROCESSING = {
    "decode": "common.imaging.decode (fast)",
    "transform": "torchvision reference: resize 256, center crop 224, ImageNet mean/std",
}
MANIFEST_FIELDS = ("name", "version", "kind", "sha256", "uri", "base_model", "categories", "preprocessing")


@dataclass(frozen=True)
class Candidate:
    """What a command made, before it has a version number."""

    kind: str  # db.registry.KINDS
    base_model: str
    categories: list[str]
    weights: bytes  # model.pt
    metrics: dict
    data_fingerprint: str
    manifest: dict  # what else the manifest says (base weights, the map, where it started from)
    files: dict  # other files of the version folder (confusion.png)


def register(settings: Settings, name: str, candidate: Candidate) -> tuple[registry.ModelVersion, dict]:
    """Upload the candidate as NAME@<next version> and insert its row, in one transaction that
    holds the name's lock from choosing the number to the commit. Returns the row and the
    manifest. A folder no row names (a command that died between upload and commit) is
    replaced, and said so on stderr."""
    digest = artefacts.sha256(candidate.weights)
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            version = registry.next_version(cur, name)  # the name stays locked until commit
            uri = artefacts.uri(settings, name, version)
            mv = registry.ModelVersion(
                name,
                version,
                digest,
                uri,
                candidate.base_model,
                candidate.categories,
                PREPROCESSING,
                candidate.metrics,
                candidate.data_fingerprint,
                kind=candidate.kind,
            )
            manifest = {
                **{k: getattr(mv, k) for k in MANIFEST_FIELDS},
                "data_fingerprint": mv.data_fingerprint,
                **candidate.manifest,
                "metrics": candidate.metrics,
            }
            files = {
                artefacts.WEIGHTS: candidate.weights,
                artefacts.MANIFEST: json.dumps(manifest, indent=2, ensure_ascii=False).encode(),
                **candidate.files,
            }
            # the name is locked: a folder no row names was left by a command that died before its commit
            replaced = artefacts.put(
                settings.s3_client(), uri, files, replace_orphan=not registry.registered(cur, name, version)
            )
            if replaced:
                print(f"{uri} held {len(replaced)} file(s) of a version never registered: replaced", file=sys.stderr)
            registry.insert(cur, mv)
    finally:
        conn.close()
    return mv, manifest


def announce(mv: registry.ModelVersion) -> None:
    """What was registered, and the next commands."""
    print(f"registered {mv.ref} (candidate) at {mv.uri}; kind {mv.kind}, sha256 {mv.sha256[:16]}…")
    print(f"try it:   python -m consumer.classify --model {mv.ref} DIR")
    print(f"serve it: python -m training promote {mv.ref}   (or shadow {mv.ref} first)")
