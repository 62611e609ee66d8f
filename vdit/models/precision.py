"""Mixed-precision helpers shared by the model's modules."""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def autocast_off(device_type: str) -> ContextManager:
    """autocast disabled on `device_type`; a no-op where autocast does not exist (e.g. the meta device)."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()
