"""The presets the commands offer by name: the library's and the miniature world's, joined here (and only
here) so that `vdit.config` and `vdit.engine` never import `vdit.mini` (docs/layout.md)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vdit.config import ModelConfig, RunConfig


def model_presets() -> dict[str, Callable[..., ModelConfig]]:
    """Model presets (`vdit model-info --preset`, `vdit convert-official --preset`): full, tiny, mini."""
    from vdit.config import PRESETS
    from vdit.mini.preset import MINI_PRESETS

    return {**PRESETS, **MINI_PRESETS}


def run_presets() -> dict[str, Callable[[], RunConfig]]:
    """Training recipes (`vdit train --preset`): the full-scale recipes and the miniature world's."""
    from vdit.engine.recipes import RUN_PRESETS
    from vdit.mini.recipe import MINI_RUN_PRESETS

    return {**RUN_PRESETS, **MINI_RUN_PRESETS}
