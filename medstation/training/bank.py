"""Training samples as data, without torch: what the fine-tuning plan and the sample renderers share
(the fine-tuning panel reads its plan on the GUI thread, which never imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: a nodule is labelled on slices where its cross-section is at least this
#: fraction of its radius away from the poles (|dz| <= LABEL_DZ * r)
LABEL_DZ = 0.7


@dataclass
class SampleBank:
    """Rendered samples: images as uint8 (0..255 = the model's window) and boxes."""

    images: np.ndarray  # (n, channels, crop, crop) uint8
    boxes: list[np.ndarray]  # each (m, 4) x0, y0, x1, y1 in model pixels
    seeds: tuple[int, int]  # phantom seeds used: [first, last)

    def __len__(self) -> int:
        return len(self.boxes)
