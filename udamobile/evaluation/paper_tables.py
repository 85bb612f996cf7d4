"""The paper's published numbers, as data: per-class IoU (%) of Tables 1-3, Cityscapes val.

Columns run left to right as in the paper's tables; None where only the
mIoU is kept: Table 1's CycleGAN and CyCADA columns, whose per-class values
are partly lost in the paper's extracted text (docs/paper.md, "Table 1",
"Table 2", "Table 3").
"""
from udamobile.errors import UsageError

PAPER_TABLES = {
    "gta5": {
        "caption": "GTA5 -> Cityscapes val (paper Tables 1 and 3)",
        "protocol": 19,
        "columns": ("source only", "CycleGAN", "CyCADA", "λsem=λfeat=0", "λsem=0",
                    "λfeat=0", "full", "oracle"),
        "iou": {
            "road": (23.1, None, None, 87.8, 88.3, 87.3, 87.6, 97.7),
            "sidewalk": (13.1, None, None, 39.1, 37.1, 36.6, 36.7, 81.9),
            "building": (42.6, None, None, 81.0, 81.1, 82.8, 83.5, 91.0),
            "wall": (2.3, None, None, 24.8, 25.4, 29.1, 29.1, 47.6),
            "fence": (13.9, None, None, 16.0, 15.3, 19.9, 17.8, 50.1),
            "pole": (5.0, None, None, 31.9, 33.6, 32.9, 33.6, 58.4),
            "traffic light": (10.3, None, None, 27.2, 29.5, 24.9, 24.3, 62.3),
            "traffic sign": (8.0, None, None, 25.7, 28.8, 32.3, 35.2, 73.4),
            "vegetation": (68.6, None, None, 78.6, 80.0, 82.8, 83.1, 91.4),
            "terrain": (6.7, None, None, 22.9, 24.4, 28.1, 28.9, 59.8),
            "sky": (24.5, None, None, 69.7, 69.2, 74.6, 76.3, 94.3),
            "person": (40.8, None, None, 55.5, 56.0, 58.3, 59.1, 77.2),
            "rider": (0.3, None, None, 16.7, 15.6, 11.6, 14.0, 50.5),
            "car": (48.1, None, None, 85.3, 85.0, 85.9, 85.9, 93.2),
            "truck": (9.4, None, None, 25.7, 25.5, 26.3, 25.4, 59.2),
            "bus": (16.3, None, None, 31.0, 30.8, 31.9, 29.4, 74.8),
            "train": (0.0, None, None, 4.4, 3.9, 1.3, 2.6, 55.8),
            "motorcycle": (0.0, None, None, 14.7, 16.3, 19.5, 19.5, 49.5),
            "bicycle": (0.0, None, None, 5.6, 6.2, 6.8, 9.3, 73.0),
        },
        "miou": (17.5, 29.3, 37.3, 39.1, 39.6, 40.7, 41.1, 70.6),
    },
    "synthia": {
        "caption": "SYNTHIA-RAND-CITYSCAPES -> Cityscapes val (paper Table 2)",
        "protocol": 16,
        "columns": ("source only", "CycleGAN", "CyCADA", "full", "oracle"),
        "iou": {
            "road": (1.4, 42.9, 30.3, 53.8, 97.8),
            "sidewalk": (10.6, 26.7, 15.8, 21.3, 83.7),
            "building": (29.1, 44.6, 64.0, 69.4, 91.2),
            "wall": (1.0, 0.5, 5.9, 3.7, 47.7),
            "fence": (0.0, 0.1, 0.0, 0.1, 49.7),
            "pole": (17.2, 29.2, 30.6, 31.6, 58.8),
            "traffic light": (2.0, 3.5, 3.8, 3.5, 63.0),
            "traffic sign": (3.6, 5.8, 10.4, 12.6, 73.9),
            "vegetation": (68.5, 67.1, 76.4, 77.5, 92.4),
            "sky": (65.0, 70.8, 73.0, 75.2, 94.4),
            "person": (42.3, 46.0, 42.9, 51.9, 77.9),
            "rider": (0.1, 3.4, 4.9, 13.2, 53.7),
            "car": (41.7, 32.8, 54.3, 64.1, 94.1),
            "bus": (8.2, 7.0, 15.0, 15.9, 80.5),
            "motorcycle": (0.0, 2.4, 3.0, 10.8, 44.7),
            "bicycle": (0.5, 3.7, 8.9, 16.7, 73.5),
        },
        "miou": (18.2, 24.2, 27.5, 32.6, 73.6),
    },
}

# Cityscapes labels, the resolution the published numbers are computed at.
PAPER_LABEL_SIZE = [1024, 2048]


def paper_table(name, protocol):
    """PAPER_TABLES[name], checking it reports the same protocol as ours."""
    if name not in PAPER_TABLES:
        raise UsageError(f"--compare_paper must be one of {sorted(PAPER_TABLES)}, "
                         f"got {name!r}")
    table = PAPER_TABLES[name]
    if table["protocol"] != protocol:
        raise UsageError(
            f"the paper's {name} table reports {table['protocol']} classes; evaluate "
            f"with --protocol={table['protocol']} to compare with it (got {protocol})")
    return table
