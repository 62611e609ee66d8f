"""vdit: referring video object segmentation with a frozen text-to-video diffusion backbone (VD-IT)."""

__version__ = "0.1.0"
