"""Plain multi-layer perceptron (DETR's MLP): Linear layers with ReLU between them, none after the last.

Used for the box heads (``bbox_embed``: 256 -> 256 -> 256 -> 4) and the dynamic-mask controller.
Parameter names are ``layers.{i}.{weight,bias}``, as in the official checkpoints (spec 10).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from vdit.errors import ConfigError


class MLP(nn.Module):
    """``num_layers`` Linear layers input_dim -> hidden_dim -> ... -> output_dim, ReLU in between."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1 or min(input_dim, hidden_dim, output_dim) <= 0:
            raise ConfigError(
                f"MLP: need num_layers >= 1 and positive sizes, got input_dim={input_dim}, "
                f"hidden_dim={hidden_dim}, output_dim={output_dim}, num_layers={num_layers}"
            )
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims_in, dims_out))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
