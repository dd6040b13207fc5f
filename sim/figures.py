"""Figures without pyplot: every plot the package writes is made here and saved as a PNG, its alternatives
told apart by the styles below.

matplotlib's object API (:class:`matplotlib.figure.Figure`) draws with the Agg renderer when it saves a
PNG, whatever the backend: a study's, a lane's, a validation's or a calibration's plots leave the caller's
backend (a notebook's inline one) alone, and pyplot keeps no list of figures to close.
"""
from __future__ import annotations

from pathlib import Path


def subplots(*args, figsize: tuple[float, float], **kw):
    """A figure and its axes (:meth:`Figure.subplots`'s arguments)."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kw)


def save(fig, path: Path, layout: bool = True, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG; ``layout``: let tight_layout place the axes first."""
    if layout:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


#: markers that read apart at a small size, for alternatives drawn as dots
MARKERS = "os^D<>pXh*"


def _palette(n: int) -> tuple:
    """The colours for ``n`` alternatives: matplotlib's ten (its cycle's) up to ten, its twenty beyond."""
    import matplotlib
    return matplotlib.colormaps["tab10" if n <= 10 else "tab20"].colors


def line_styles(n: int) -> list[dict]:
    """A distinct colour and line style for each of ``n`` alternatives: matplotlib's 10-colour cycle repeats
    after ten, which would draw two alternatives alike (the line style changes when the colours start again)."""
    colors, dashes = _palette(n), ["-", "--", ":", "-."]
    return [{"color": colors[k % len(colors)], "linestyle": dashes[(k // len(colors)) % len(dashes)]}
            for k in range(n)]


def dot_styles(n: int) -> list[dict]:
    """A distinct colour and marker for each of ``n`` alternatives drawn as dots: the marker moves on by one
    each time the colours start again (distinct up to 200 alternatives)."""
    colors = _palette(n)
    return [{"color": colors[k % len(colors)], "marker": MARKERS[(k + k // len(colors)) % len(MARKERS)]}
            for k in range(n)]
