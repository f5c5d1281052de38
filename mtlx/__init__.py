"""mtlx: a JAX research framework for comparing multi-task learning architectures."""

__version__ = "0.1.0"
