"""Test kit: random tiny foundation models in the real on-disk layouts (see tiny_models)."""
from vdit.testing.tiny_models import build_tiny_foundation

__all__ = ["build_tiny_foundation"]
