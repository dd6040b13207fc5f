"""Figures without pyplot: every plot the package writes is made here and saved as a PNG.

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
