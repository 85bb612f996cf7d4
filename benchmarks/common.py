"""Helpers shared by the benchmarks: the machine's description, full-size test files."""
import os
import sys

import numpy as np

from udamobile.machine import describe as machine  # noqa: F401 (re-exported)

# The writers of the real dataset formats are test fixtures (tests/dataset_files.py).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))

GTA5_SIZE = (1052, 1914)  # height, width


def write_full_size_gta5(root, count):
    """GTA5-format pairs whose content compresses like a street scene, not a flat grey."""
    import cv2
    import dataset_files
    from data_pipelines import demo_domains
    from data_pipelines.classes import CITYSCAPES_LABEL_ID_TO_TRAIN_ID

    height, width = GTA5_SIZE
    rng = np.random.default_rng(0)
    label_id_of = np.zeros(256, np.uint8)  # train id -> Cityscapes label id (0: unlabelled)
    for label_id, train_id in CITYSCAPES_LABEL_ID_TO_TRAIN_ID.items():
        label_id_of[train_id] = label_id
    for i in range(count):
        image, train_ids = demo_domains.generate_scene("demo_target", "train", i)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        train_ids = cv2.resize(train_ids, (width, height), interpolation=cv2.INTER_NEAREST)
        dataset_files.write_rgb_png(os.path.join(root, "images", f"{i:05d}.png"), image)
        dataset_files.write_palette_png(os.path.join(root, "labels", f"{i:05d}.png"),
                                        label_id_of[train_ids])
