"""Checks a dataset folder before training.

    python -m data_pipelines.check --dataset=gta5 --root=/data/GTA5 [--split=train] [--all]

Prints the report of `data_pipelines.check_dataset` and exits with status 1
if it found problems.
"""
import sys

from absl import app, flags

from data_pipelines.datasets import DATASET_NAMES
from data_pipelines.validation import check_dataset

_DATASET = flags.DEFINE_enum("dataset", None, DATASET_NAMES, "Dataset to check.")
_ROOT = flags.DEFINE_string("root", None, "Folder of the dataset (none for the demo domains).")
_SPLIT = flags.DEFINE_string("split", "train", "Split to check, e.g. train, heldout, val.")
_ALL = flags.DEFINE_bool("all", False, "Decode every image and label, not just a sample.")
_SYNTHIA_CLASSES = flags.DEFINE_enum("synthia_classes", "16", ["16", "13"],
                                     "SYNTHIA label protocol.")
flags.mark_flag_as_required("dataset")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    report = check_dataset(_DATASET.value, _ROOT.value, _SPLIT.value, check_all=_ALL.value,
                           synthia_classes=int(_SYNTHIA_CLASSES.value))
    print(report)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    app.run(main)
