"""Spend charts for `/sora-admin usage`, drawn off the event loop (matplotlib is blocking)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def spend_chart(days: Sequence[str], charged: Sequence[int], refunded: Sequence[int], title: str) -> bytes:
    """A PNG bar chart of credits charged and refunded per day."""
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    try:
        positions = range(len(days))
        ax.bar(positions, charged, color="#5865F2", label="charged")
        ax.bar(positions, refunded, bottom=charged, color="#ED4245", alpha=0.6, label="refunded")
        step = max(1, len(days) // 10)
        ax.set_xticks(list(positions)[::step], [d[5:] for d in days][::step])
        ax.set_ylabel("credits")
        ax.set_title(title)
        ax.legend(loc="upper left")
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
