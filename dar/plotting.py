"""matplotlib for the harness's figures: the Agg canvas, and text drawn exactly as written.

Labels, titles and legends carry user text (a run's label from the grid); matplotlib would parse a
`$...$` in them as mathtext and fail on anything it cannot typeset, so mathtext is off for every
figure the harness draws (`text.parse_math`, matplotlib >= 3.6).
"""

from __future__ import annotations


def plain_text() -> None:
    """Every Text created from now on is drawn as written."""
    import matplotlib

    matplotlib.rcParams["text.parse_math"] = False


def pyplot():
    """matplotlib.pyplot on the Agg canvas (no display needed), text as written."""
    import matplotlib

    matplotlib.use("Agg")
    plain_text()
    import matplotlib.pyplot as plt

    return plt


def log_scale(ax, axis: str = "y") -> None:
    """A log axis whose tick labels are plain text (1e-05): the default labels are mathtext, drawn verbatim
    ('$\\mathdefault{10^{-5}}$') with mathtext off."""
    from matplotlib import ticker

    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(ticker.LogFormatter(labelOnlyBase=False))
    target.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))  # short ranges


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def line_style(i: int) -> dict:
    """Colour and marker of the i-th of many lines (tab20's dark shades first, then its light ones; a marker each),
    so a dozen methods stay apart where the default cycle repeats after ten."""
    from matplotlib import colormaps

    tab20 = colormaps["tab20"].colors
    order = [*tab20[0::2], *tab20[1::2]]
    return {"color": order[i % len(order)], "marker": MARKERS[i % len(MARKERS)]}
