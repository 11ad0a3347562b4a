"""Diagnostics of cross-layer information flow (paper Sec. 3, 5.3, 5.5 and App. B).

One concept per module, each a function of a frozen checkpoint and a fixed set
of (image, noise) pairs swept over a t grid:

    pairs         the fixed (x1 image, x0 noise, label) pairs and the uniform t grid
    flow          Fig. 2: per-block forward RMS, gradient RMS and adjacent-block cosine
    importance    Fig. 3: measurement-only gates on the residual baseline (dL/dg) and DAR's alpha
    probe         Fig. 5: ridge probe of t from the aggregated state feeding each router
    chunk_theory  Eq. 8-9, Proposition 1: the U-shaped cost of chunked aggregation and S*
    plots         the PNG of each figure (matplotlib, Agg)
    job           `python -m dar diagnose`: runs one figure, writes its JSON and PNG (dar.plan builds its config)

Time convention: SiT's (dar.transport.path), t = 0 noise, t = 1 data.
"""
