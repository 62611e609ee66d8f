"""The mask optimiser, MSO (spec 3.7, SgMg's segment-and-optimise): refines the 16-channel s8 mask logits of
the selected query with the s8 and s4 backbone levels, then pixel-shuffles to one channel at s1 (M)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskOptimiser(nn.Module):
    def __init__(self, mask_channels: int, l1_channels: int, l0_channels: int, upscale: int):
        super().__init__()
        c = mask_channels
        self.upscale = upscale
        self.conv1_1div8 = nn.Conv2d(c + l1_channels, c, kernel_size=3, padding=1)
        self.conv2_1div8 = nn.Conv2d(c, c, kernel_size=3, padding=1)
        self.conv1_1div4 = nn.Conv2d(c + l0_channels, c, kernel_size=3, padding=1)
        self.conv2_1div4 = nn.Conv2d(c, c, kernel_size=3, padding=1)

    def forward(self, masks: torch.Tensor, level1: torch.Tensor, level0: torch.Tensor) -> torch.Tensor:
        """masks [N,c,h8,w8], level1 [N,C1,h8,w8], level0 [N,C0,h4,w4] -> M logits [N,1,upscale*h4,upscale*w4]."""
        m = masks + self.conv2_1div8(F.relu(self.conv1_1div8(F.relu(torch.cat([masks, level1], dim=1)))))
        m = F.interpolate(m, size=level0.shape[-2:], mode="bilinear", align_corners=False)
        m = m + self.conv2_1div4(F.relu(self.conv1_1div4(F.relu(torch.cat([m, level0], dim=1)))))
        return F.pixel_shuffle(m, self.upscale)
