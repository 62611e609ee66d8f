"""A training run's whole configuration (what `vdit train` saves as run.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field

from vdit.config.data import DataConfig
from vdit.config.model import ModelConfig
from vdit.config.train import TrainConfig


@dataclass
class RunConfig:
    """Everything a training run needs: the model, the optimisation and the data."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def validate(self) -> "RunConfig":
        self.model.validate()
        self.train.validate()
        self.data.validate()
        return self
