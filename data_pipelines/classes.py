"""The Cityscapes label space every dataset is mapped into.

Train ids 0..18 are the 19 evaluation classes of Cityscapes; 255 is "ignore".
GTA5 and Cityscapes store Cityscapes *label ids* (0..33) and map them with
`CITYSCAPES_LABEL_ID_TO_TRAIN_ID`; SYNTHIA stores its own ids and maps them
with `SYNTHIA_ID_TO_TRAIN_ID`. SYNTHIA results are reported on 16 or 13 of the
19 classes (`PROTOCOL_CLASSES`).
"""
import numpy as np

IGNORE_LABEL = 255
NUM_CLASSES = 19

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)

# The official Cityscapes colours of the 19 train ids (cityscapesScripts).
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32),
], dtype=np.uint8)
IGNORE_COLOR = (0, 0, 0)

# Cityscapes label id -> train id; every id not listed (and -1) is ignored.
CITYSCAPES_LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}

# SYNTHIA-RAND-CITYSCAPES class id (R channel of GT/LABELS) -> train id.
# SYNTHIA has no terrain, truck or train.
SYNTHIA_ID_TO_TRAIN_ID = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 10, 10: 11,
    17: 12, 8: 13, 19: 15, 12: 17, 11: 18,
}

# Train ids over which mIoU is averaged, per evaluation protocol.
PROTOCOL_CLASSES = {
    19: tuple(range(NUM_CLASSES)),
    16: tuple(i for i in range(NUM_CLASSES) if CLASS_NAMES[i] not in
              ("terrain", "truck", "train")),
    13: tuple(i for i in range(NUM_CLASSES) if CLASS_NAMES[i] not in
              ("terrain", "truck", "train", "wall", "fence", "pole")),
}


def lookup_table(id_to_train_id, size=256):
    """A uint8 array `t` with `t[id] = train id` (255 where `id` is unmapped)."""
    table = np.full(size, IGNORE_LABEL, dtype=np.uint8)
    for source_id, train_id in id_to_train_id.items():
        table[source_id] = train_id
    return table


def colorize(train_ids):
    """[..., H, W] integer train ids -> [..., H, W, 3] uint8 Cityscapes colours.

    Ignored (255) and any other out-of-range pixel is drawn black.
    """
    train_ids = np.asarray(train_ids)
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[:NUM_CLASSES] = PALETTE
    colours[IGNORE_LABEL] = IGNORE_COLOR
    return colours[np.clip(train_ids, 0, 255).astype(np.int64)]
