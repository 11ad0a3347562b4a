"""Sample-quality metrics under the ADM evaluation protocol (guided-diffusion `evaluations/evaluator.py`).

    frechet      Frechet distance of two Gaussians (float64, scipy sqrtm, ADM/TTUR handling)
    fidelity     FID from statistics, IS and precision/recall through torch-fidelity 0.4.0's metric functions
    extractors   feature spaces: torch-fidelity's InceptionV3 plus the sFID hook, and the digits network
    digits_net   the small digits classifier that stands in for Inception at CPU scale
    reference    reference statistics: an ADM reference batch, or a cache computed from a dataset
    checks       validation of sample files, sidecars and references (clear errors, no tracebacks)
    evaluate     the evaluation job, `python -m dar evaluate`

Importing this package has no side effects; the torch-fidelity registrations happen
in `extractors.register_extractors()` when an extractor is first built.
"""
