"""lrpseg core: models, LRP, segmenters, training, data, export and the command line (no Qt here)."""

from importlib.metadata import version

__version__ = version("lrpseg")
