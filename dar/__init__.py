"""DAR: a reproduction harness for "Rethinking Cross-Layer Information Routing in
Diffusion Transformers" (Diffusion-Adaptive Routing).

Importing the package has no side effects; entry points are `python -m dar <command>`.
"""

__version__ = "0.1.0"
