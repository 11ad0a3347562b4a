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
