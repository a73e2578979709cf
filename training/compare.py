"""How a shadow version agrees with production on the same images (top-1), overall and per
production category, and what it costs the workers (its model time per image)."""

from __future__ import annotations

from db.registry import shadow_agreement as compare  # noqa: F401 - `python -m training compare`


def render(result: dict) -> str:
    if result.get("error"):
        return f"error: {result['error']}"
    if not result["images"]:
        return f"{result['shadow']} vs {result['production']}: no image classified by both yet"
    lines = [
        f"{result['shadow']} (shadow) vs {result['production']} (production): {result['images']} images, "
        f"top-1 agreement {result['agreement']:.1%}; the shadow model costs {result['shadow_ms_per_image']:.2f} ms "
        "of model time per image",
        f"  {'production category':<28} {'images':>7} {'agreement':>9}",
    ]
    for c, v in result["per_category"].items():
        lines.append(f"  {c!r:<28} {v['images']:>7} {v['agreement']:>9.1%}")
    return "\n".join(lines)
