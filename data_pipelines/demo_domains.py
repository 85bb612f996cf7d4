"""Every built-in demo domain by name: its splits, its scenes and the Dataset reading them.

`demo_source`, `demo_target` and `demo_city` (data_pipelines/demo.py) and the
shift suite (data_pipelines/demo_shifts.py). Every (domain, split, index) is
its own deterministic scene: the random generator is seeded with (CRC-32 of
"domain/split", index). Nothing is stored.
"""
import zlib

import numpy as np

from data_pipelines import demo, demo_shifts
from data_pipelines.base import Dataset
from udamobile.errors import DatasetError

SPLIT_SIZES = {
    "demo_source": {"train": 2000, "heldout": 200},
    "demo_target": {"train": 2000, "val": 200},
    "demo_city": {"train": 2000, "val": 200},
    **{name: {"train": 2000, "val": 200} for name in demo_shifts.SHIFTS},
}


def scene_rng(domain, split, index):
    """The random generator of scene `index` of `domain`/`split`."""
    seed = zlib.crc32(f"{domain}/{split}".encode("utf-8"))
    return np.random.default_rng([seed, index])


def generate_scene(domain, split, index, size=demo.DEMO_SIZE):
    """Scene `index` of `domain`/`split`: (uint8 [h, w, 3] RGB image, uint8 [h, w] train ids)."""
    rng = scene_rng(domain, split, index)
    if domain in demo_shifts.SHIFTS:
        return demo_shifts.generate(domain, rng, size)
    layout, render = demo.DOMAINS[domain]
    objects, object_classes, details = demo.scene_layout(rng, *size, layout)
    return render(objects, object_classes, details, rng), object_classes[objects]


def _checked_size(size):
    if size is None:
        return demo.DEMO_SIZE
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, (int, np.integer)) and s >= 16 for s in size)):
        raise DatasetError(f"demo_size must be (height, width) with both >= 16, got {size!r}")
    return int(size[0]), int(size[1])


class DemoDataset(Dataset):
    """A split of a built-in demo domain, generated on demand.

    Args:
      domain: a key of SPLIT_SIZES.
      split: a key of SPLIT_SIZES[domain].
      size: (height, width) of the images, default demo.DEMO_SIZE.
    """

    def __init__(self, domain, split, size=None):
        super().__init__(domain, split, has_labels=True)
        self.size = _checked_size(size)
        self._length = SPLIT_SIZES[domain][split]

    def __len__(self):
        return self._length

    def read_pair(self, index):
        self.check_index(index)
        return generate_scene(self.name, self.split, index, self.size)

    def read_image(self, index):
        return self.read_pair(index)[0]

    def read_label(self, index):
        return self.read_pair(index)[1]

    def describe(self, index):
        self.check_index(index)
        return f"{self.name}/{self.split}/{index}"
