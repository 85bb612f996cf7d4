"""Checks a dataset folder before training.

    udamobile-check-data --dataset=gta5 --root=/data/GTA5 [--split=train] [--all]
    udamobile-check-data --dataset=folder --root=/data/sim --label_map=sim_ids.json

Prints the report of `data_pipelines.check_dataset`; if it found problems,
ends with one line naming the first and exits with status 1.
(`python -m data_pipelines.check` runs the same program.)
"""
from absl import flags

from data_pipelines import cli
from data_pipelines.datasets import DATASET_NAMES
from data_pipelines.validation import check_dataset
from udamobile.errors import DatasetError

_DATASET = flags.DEFINE_enum("dataset", None, DATASET_NAMES, "Dataset to check.")
_ROOT = flags.DEFINE_string("root", None, "Folder of the dataset (none for the demo domains).")
_SPLIT = flags.DEFINE_string("split", "train", "Split to check, e.g. train, heldout, val.")
_ALL = flags.DEFINE_bool("all", False, "Decode every image and label, not just a sample.")
_SYNTHIA_CLASSES = flags.DEFINE_enum("synthia_classes", "16", ["16", "13"],
                                     "SYNTHIA label protocol.")
_LABEL_MAP = flags.DEFINE_string("label_map", None, "Dataset folder only: JSON file mapping the "
                                 "ids of its label files to train ids (docs/datasets.md).")
flags.mark_flag_as_required("dataset")


def main(argv):
    cli.reject_arguments(argv)
    report = check_dataset(_DATASET.value, _ROOT.value, _SPLIT.value, check_all=_ALL.value,
                           synthia_classes=int(_SYNTHIA_CLASSES.value),
                           label_map=_LABEL_MAP.value)
    print(report)
    if not report.ok:
        raise DatasetError(report.summary())


def run():
    cli.run("python -m data_pipelines.check", main, uses_tensorflow=False)


if __name__ == "__main__":
    run()
