"""The AdaptFT run's figure: a view of ``results.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(data: dict[str, Any], path: Path) -> str | None:
    """Held-out score by stage: agent, naive and oracle (the agent's first candidates as points); Agg canvas, no pyplot."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:  # the plot is a view of results.json, which is already complete
        return None
    rows = data["stages"]
    xs = [r["stage"] for r in rows]
    v1 = data["details"][0]["promoted_scores"].get("v1") if data["details"] else None
    fig = Figure(figsize=(5.5, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(
        [0, *xs],
        [v1, *[r["best"] for r in rows]],
        "o-",
        color="#2b7bb9",
        label="kaizen agent (best promoted)",
    )
    ax.plot([0, *xs], [v1, *[r["naive"] for r in rows]], "s--", color="#e6842a", label="naive retraining")
    if all(r.get("oracle") is not None for r in rows):
        ax.plot(
            [0, *xs], [v1, *[r["oracle"] for r in rows]], "^:", color="#777777", label="oracle (true labels)"
        )
    fx = [r["stage"] for r in rows if r["first"] is not None]
    ax.plot(
        fx,
        [r["first"] for r in rows if r["first"] is not None],
        "x",
        color="#2ca25f",
        label="agent: first candidate",
    )
    rates = data.get("poison_rates") or []
    ax.set_xticks(
        [0, *xs],
        [
            "v1",
            *[
                f"stage {x}\n{rates[i]:.0%} poison" if i < len(rates) else f"stage {x}"
                for i, x in enumerate(xs)
            ],
        ],
        fontsize=8,
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy (clean gold)")
    ax.set_title(f"AdaptFT-style stages: {data['scenario']} / {data['preset']}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    ax.spines[["top", "right"]].set_visible(False)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return str(path)
