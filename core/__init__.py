"""lrpseg core: models, LRP, segmenters, training, data, export and the command line (no Qt here)."""

__version__ = "0.1.0"
