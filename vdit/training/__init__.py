"""Training of the VD-IT network: the step that matches predictions to a ClipBatch and scores them.
The engine (`vdit.engine`) runs it in its loop; `vdit.models` knows nothing of it."""
from vdit.training.wrapper import TrainingWrapper, pad_targets

__all__ = ["TrainingWrapper", "pad_targets"]
