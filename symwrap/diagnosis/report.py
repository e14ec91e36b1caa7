"""The bar chart every diagnosis draws."""

from __future__ import annotations


def bar_chart(names: list[str], values: list[float], xlabel: str, path: str, title: str | None = None) -> str:
    """Horizontal bars, the first name at the top, written to ``path`` (PNG); needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    axis.barh(names[::-1], values[::-1])
    axis.set_xlabel(xlabel)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
