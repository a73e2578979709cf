"""The pipeline benchmark's picture: rows written per second (pipeline, baseline, limit) and
the workers' time per stage."""

from __future__ import annotations

import statistics
from pathlib import Path


def throughput(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def draw(path: Path, pipeline: list[float], baseline: list[float], stages: dict, figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label, times in (("pipeline", pipeline), ("seed-style baseline", baseline)):
        if times:
            t0 = times[0]
            seconds = [int(t - t0) for t in times]
            per_s = [seconds.count(s) for s in range(seconds[-1] + 1)]
            ax1.plot(range(len(per_s)), per_s, label=f"{label} ({throughput(times):.1f} img/s)")
    ax1.axhline(figures["limit_img_s"], linestyle="--", color="grey", label=f"limit {figures['limit_img_s']} img/s")
    ax1.set_xlabel("seconds since first row")
    ax1.set_ylabel("rows written per second")
    ax1.legend()
    ax1.set_title(
        f"{figures['workers']} workers x {figures['torch_threads_per_worker']} threads, "
        f"{figures['partitions']} partitions, batch {figures['batch_size']}, {figures['engine']}, "
        f"{figures['cpu_count']} cores",
        fontsize=9,
    )
    names = list(stages)
    ax2.barh(names, [stages[n] for n in names])
    ax2.set_xlabel("seconds")
    ax2.set_title("time per stage")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def draw_peers(path: Path, figures: dict) -> None:
    """benchmarks/spark_peer.py's figure: images/s and CPU per image, every repeat, and latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"pipeline": "tab:blue", "spark": "tab:orange", "ray_data": "tab:green"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (key, label) in zip(axes, (("img_s", "images/s"), ("cpu_ms_per_image", "CPU ms per image"))):
        names = [n for n in colours if n in figures and (key == "img_s" or n != "ray_data")]
        for i, name in enumerate(names):
            runs = figures[name]["runs"]
            values = runs if name == "ray_data" else [x[key] for x in runs]
            ax.bar(i, statistics.median(values), color=colours[name], alpha=0.7)
            ax.plot([i] * len(values), values, "k.")
        ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
        ax.set_title(label + " (bar: median, dots: repeats)")
    ax = axes[2]
    for i, name in enumerate(("pipeline", "spark")):
        lat = figures[name]["latency_at_half_rate"]
        ax.bar([i - 0.2, i + 0.2], [lat["p50_s"], lat["p95_s"]], width=0.35, color=colours[name])
    ax.set_xticks(range(2), ["pipeline", "spark"])
    ax.set_title("latency at half rate, s (p50, p95)")
    fig.suptitle(
        f"{figures['machine']}: {figures['images']} images, {figures['repeats']} repeats (Ray Data: local files)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
