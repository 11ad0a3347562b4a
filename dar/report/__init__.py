"""The HTML report: the paper's tables and figures with ours beside theirs, and the provenance of every cell.

    python -m dar report --preset digits      # -> reports/digits/index.html (+ reports/index.html, a list of presets)

tables.py lays out Tables 1-4 and the Fig. 1b points from the collated table; figures.py
draws the figures the report makes itself; slots.py picks up figures other jobs make
(diagnostics, sample grids, the kernel benchmark); provenance.py gathers config, protocols,
versions and run times; render.py fills the Jinja templates (templates/*.html.j2);
browser.py opens a page in headless Chromium (tests, screenshots).
"""
