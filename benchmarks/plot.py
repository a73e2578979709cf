"""The pipeline benchmark's picture: rows written per second (pipeline, baseline, limit) and
the workers' time per stage."""

from __future__ import annotations

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
