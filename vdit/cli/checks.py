"""Checks the commands run on their arguments before they load a model or create a file.

Every failure is a VditError subclass with a one-line message (the CLI prints it and exits 2), so a bad
argument costs milliseconds and leaves nothing on disk:

- `check_output_dir(path)`: the output folder can be created (or is a folder); nothing is created
  (`vdit.fileio.first_missing(path)`: what creating it creates, to be removed again when the run fails);
- `check_local_dir(path, what)`: a folder argument (weights, foundation, run) exists locally. Local
  folders never fall back to the Hugging Face Hub from the command line: a typo would otherwise cost a
  minute of network retries before the same error;
- `check_foundation(cfg)`: the foundation locations of a model config exist when they name local
  folders (see `is_hub_id` for what is tried on the Hub); `check_weights_foundation(W)`: those a
  weights folder's config.json records;
- `check_text_length(texts)`: referring expressions are sentences, not files pasted by mistake.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from vdit.errors import ConfigError, InputError, ModelLoadError

# A Hub repository id: "name" or "owner/name" (letters, digits, '-', '_', '.'), as huggingface_hub
# validates them; anything else (two slashes, a leading "." "/" "~", a backslash) is a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
# Foundation architectures that exist only as local folders (built by vdit.testing / `vdit mini pretrain`).
LOCAL_ONLY_ARCHS = ("tiny", "mini")
# Longest referring expression `vdit segment` accepts. The text encoders read at most 128 (RoBERTa) and
# 77 (the T2V CLIP tokenizer) tokens, i.e. a few hundred characters of English; 1000 characters leaves
# room for any sentence and still catches a file's content passed to --text by mistake.
MAX_TEXT_CHARS = 1000


def is_hub_id(value: str) -> bool:
    """True when `value` is shaped like a Hub repository id and is not written as a path."""
    return bool(_HUB_ID.match(value)) and ".." not in value


def check_output_dir(path: str | Path) -> Path:
    """The output folder `path` is an existing folder, or can be created: its nearest existing ancestor is
    a writable folder. Nothing is created (a run that fails later must not leave an empty folder)."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"output directory {out} is a file, not a folder")
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"output directory {out} is not writable ({probe} is a file)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output directory {out} is not writable ({probe} is read-only)")
    return out


def check_local_dir(path: str | Path, what: str, needs: Sequence[str] = (), expected: str = "") -> Path:
    """`path` is an existing local folder holding the files `needs`; ModelLoadError naming it otherwise.
    `expected` describes the folder in the messages ("a folder written by ...")."""
    folder = Path(path).expanduser()
    tail = f" (expected {expected})" if expected else ""
    if not folder.exists():
        raise ModelLoadError(f"{what} not found: {folder}{tail}")
    if not folder.is_dir():
        raise ModelLoadError(f"{what} {folder} is a file, not a folder{tail}")
    missing = [name for name in needs if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(f"{folder} has no {', '.join(missing)}{tail}")
    return folder


def check_weights_dir(path: str | Path) -> Path:
    """A folder written by `VDIT.save_pretrained` (model.safetensors + config.json)."""
    from vdit.models.vdit import CONFIG_NAME, WEIGHTS_NAME

    return check_local_dir(path, "weights folder", (WEIGHTS_NAME, CONFIG_NAME),
                           "a folder written by VDIT.save_pretrained or vdit convert-official")


def check_foundation(foundation: Any, hint: str = "") -> None:
    """Every foundation location of a FoundationConfig that names a local folder exists. A location is
    tried on the Hub only when it is shaped like a Hub id and the architecture has published weights
    (`LOCAL_ONLY_ARCHS` never do: "tiny-foundation/t2v" is a missing folder, not a repository)."""
    from vdit.config import FOUNDATION_PARTS

    arch = getattr(foundation, "arch", "")
    for part in FOUNDATION_PARTS:
        value = str(getattr(foundation, part))
        if Path(value).expanduser().is_dir():
            continue
        if arch not in LOCAL_ONLY_ARCHS and is_hub_id(value) and not Path(value).expanduser().exists():
            continue
        raise ConfigError(f"foundation model folder {value} (model.foundation.{part}) not found{hint}")


def check_weights_foundation(weights: str | Path, overrides: dict[str, str] | None = None) -> None:
    """The foundation folders a weights folder's config.json records (after `overrides`) exist, read from
    the config alone (milliseconds), so a moved folder fails here instead of after a Hub lookup."""
    from vdit.models.vdit import load_model_config

    cfg = load_model_config(weights)
    for key, value in (overrides or {}).items():
        if not hasattr(cfg.foundation, key):
            raise ModelLoadError(f"unknown foundation key {key!r}; known: t2v, clip_vision, text_encoder")
        setattr(cfg.foundation, key, value)
    check_foundation(cfg.foundation, f" (named by {Path(weights) / 'config.json'}; point it elsewhere with "
                                     "--foundation KEY=PATH or --foundation-root DIR)")


def check_weights(weights: str | Path | None, foundation: dict[str, str] | None = None) -> None:
    """A `--weights` folder (None: the built-in model) and the foundation folders its config names (with
    `foundation` overrides) exist, before anything loads."""
    if weights is None:
        from vdit.mini.builtin import check_builtin_weights

        check_weights_foundation(check_builtin_weights(), foundation)
        return
    check_weights_foundation(check_weights_dir(weights), foundation)


def check_text_length(texts: Sequence[str], limit: int = MAX_TEXT_CHARS) -> None:
    """Every text is at most `limit` characters (InputError naming the first that is not)."""
    for i, text in enumerate(texts):
        if len(text) > limit:
            raise InputError(f"text {i} has {len(text)} characters; a referring expression is one sentence "
                             f"(at most {limit} characters)")
