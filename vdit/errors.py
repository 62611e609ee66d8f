"""User-facing errors. The CLI prints their message on one line and exits non-zero (no traceback)."""


class VditError(Exception):
    """Base class: something the user can fix (bad input, missing file, bad config)."""


class ConfigError(VditError):
    """A config key or value is invalid."""


class ModelLoadError(VditError):
    """A foundation model folder / checkpoint is missing, malformed or truncated."""


class InputError(VditError):
    """Bad model input: empty text, wrong channel count, frames too small, mismatched sizes..."""


class DataError(VditError):
    """A dataset file is missing, corrupt or inconsistent. The message names the file."""


class EvaluationError(VditError):
    """Results cannot be scored (missing frames, wrong sizes, unknown object ids...)."""
