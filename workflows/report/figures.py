"""The report's figures, as inlined base64 PNGs (the page loads nothing from elsewhere).

matplotlib's Agg canvas is used directly — no pyplot, no global backend switch — so drawing a report
inside a long-lived process (the scheduler, the UI) leaves no figure state behind. Every function
takes the JSON sections (as re-read from ``report.json``) and returns ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
from typing import Any


def to_png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def new_figure(w: float, h: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def short(v: str | None, n: int = 28) -> str:
    v = str(v)
    return v if len(v) <= n else "…" + v[-(n - 1) :]


def fig_scores(data: dict[str, Any]) -> str | None:
    suites = [s for s in data.get("suites") or [] if any(v is not None for v in s["scores"].values())]
    if not suites:
        return None
    versions = [v for v in [data["versions"].get("incumbent"), *data["versions"].get("candidates", [])] if v]
    fig = new_figure(min(2.0 + 1.6 * len(suites) * max(1, len(versions)) / 2, 11), 3.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(versions))
    colors = ["#9aa5b1", "#2b7bb9", "#2ca25f", "#e6842a", "#8e44ad"]
    for k, v in enumerate(versions):
        xs = [i + (k - (len(versions) - 1) / 2) * width for i in range(len(suites))]
        ys = [s["scores"].get(v) for s in suites]
        bars = ax.bar(
            xs,
            [y or 0 for y in ys],
            width,
            label=("incumbent " if k == 0 else "") + short(v),
            color=colors[k % len(colors)],
        )
        for b, y in zip(bars, ys, strict=True):
            if y is not None:
                ax.annotate(
                    f"{y:.3f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7
                )
    ax.set_xticks(range(len(suites)), [f"{s['suite']}\n(n={s['n']})" for s in suites], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title("score per suite", fontsize=10)
    return to_png(fig)


def fig_confusion(conf: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(incumbent | candidate heatmaps, change heatmap); the change is its own image so labels stay legible."""
    if not conf or not conf.get("labels"):
        return None, None
    import numpy as np

    labels = conf["labels"]
    inc = np.array(conf["incumbent"]["matrix"])
    pair = [(f"{short(conf['incumbent']['version'], 34)} (incumbent)", inc)]
    change = None
    if conf.get("candidate"):
        cand = np.array(conf["candidate"]["matrix"])
        pair.append((f"{short(conf['candidate']['version'], 34)} (candidate)", cand))
        change = cand - inc
    vmax = max(int(m.max()) for _, m in pair) or 1
    first = _heatmaps(labels, [(t, m, False) for t, m in pair], vmax)
    second = (
        _heatmaps(labels, [("change: candidate − incumbent (blue better, red worse)", change, True)], vmax)
        if change is not None
        else None
    )
    return first, second


def _heatmaps(labels: list[str], panels: list[tuple[str, Any, bool]], vmax: int) -> str:
    import numpy as np

    n = len(labels)
    side = max(3.4, 0.32 * n + 1.6)
    fig = new_figure(side * len(panels) + 0.6, side + 0.4)
    for k, (title, m, diff) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        lim = max(1, int(np.abs(m).max()))
        if diff:
            # More on the diagonal (right answers) is good, more off it (confusions) is bad: blue good, red bad.
            signed = np.where(np.eye(n, dtype=bool), m, -m)
            ax.imshow(signed, cmap="RdBu", vmin=-lim, vmax=lim)
        else:
            ax.imshow(m, cmap="Blues", vmin=0, vmax=vmax)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(n), labels, rotation=55, ha="right", fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
        ax.set_xlabel("model output", fontsize=8)
        ax.set_ylabel("expected", fontsize=8)
        if n <= 24:
            for i in range(n):
                for j in range(n):
                    v = int(m[i, j])
                    if v:
                        dark = abs(v) > lim * 0.55 if diff else v > vmax * 0.55
                        ax.text(
                            j,
                            i,
                            f"{v:+d}" if diff else str(v),
                            ha="center",
                            va="center",
                            fontsize=7.5,
                            color="white" if dark else "black",
                        )
    fig.tight_layout()
    return to_png(fig)


def fig_training(training: list[dict[str, Any]]) -> str | None:
    curves = [t for t in training if t["curve"]["step"]]
    if not curves:
        return None
    fig = new_figure(7.5, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    for t in curves:
        ax.plot(
            t["curve"]["step"], t["curve"]["loss"], marker="o", markersize=3, label=f"step {t['iteration']}"
        )
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss")
    ax.set_title("training loss per iteration", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return to_png(fig)


def fig_rl(training: list[dict[str, Any]]) -> str | None:
    """GRPO steps: mean reward and policy entropy per optimiser step (entropy collapsing = learning stops)."""
    curves = [t for t in training if (t.get("rl") or {}).get("step")]
    if not curves:
        return None
    fig = new_figure(7.5, 3.0)
    for k, (key, label) in enumerate((("reward", "mean reward"), ("entropy", "entropy (nats/token)"))):
        ax = fig.add_subplot(1, 2, k + 1)
        for t in curves:
            pts = [(s, v) for s, v in zip(t["rl"]["step"], t["rl"][key], strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", markersize=3, label=f"step {t['iteration']}")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        if k == 0:
            ax.legend(fontsize=8)
    fig.suptitle("GRPO: reward and entropy per step", fontsize=10)
    fig.tight_layout()
    return to_png(fig)


def fig_phases(phases: dict[str, Any]) -> str | None:
    rows = [p for p in phases.get("phases") or [] if p["seconds"] > 0]
    if not rows:
        return None
    fig = new_figure(7.5, 0.45 * len(rows) + 1.0)
    ax = fig.add_subplot(1, 1, 1)
    ys = range(len(rows))[::-1]
    ax.barh(list(ys), [p["seconds"] for p in rows], color="#2b7bb9")
    ax.set_yticks(list(ys), [p["phase"] for p in rows], fontsize=8)
    for y, p in zip(ys, rows, strict=True):
        ax.annotate(f" {p['seconds']:.1f} s", (p["seconds"], y), va="center", fontsize=7)
    ax.set_xlabel("seconds")
    ax.set_title(f"time per phase (total {phases.get('total_s', 0):.1f} s)", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_xlim(0, max(p["seconds"] for p in rows) * 1.18)
    return to_png(fig)
