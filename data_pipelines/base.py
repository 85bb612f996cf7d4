"""What every dataset is: indexed (image, label) pairs of one split.

Its errors, like every package's, are in `udamobile.errors`.
"""
import abc

from udamobile import errors


class Dataset(abc.ABC):
    """One split of one dataset: `len(dataset)` images, read by index.

    Attributes:
      name: a name of `data_pipelines.DATASET_NAMES`, e.g. "gta5".
      split: e.g. "train", "heldout", "val".
      has_labels: whether `read_label` works (Cityscapes train without its
        gtFine folder is unlabelled; it can still be an adaptation target).
    """

    def __init__(self, name, split, *, has_labels):
        self.name = name
        self.split = split
        self.has_labels = has_labels

    @abc.abstractmethod
    def __len__(self):
        """The number of images in the split."""

    @abc.abstractmethod
    def read_image(self, index):
        """Image `index` as uint8 [H, W, 3] RGB."""

    @abc.abstractmethod
    def read_label(self, index):
        """The label of image `index` as uint8 [H, W] train ids (255 = ignore)."""

    @abc.abstractmethod
    def describe(self, index):
        """Where image `index` comes from (a path, or "demo_target/val/17")."""

    def read_label_ids(self, index):
        """The label of image `index` as stored (ids of `label_format`), at its own size.

        The default: a dataset that stores train ids (the demo domains)."""
        return self.read_label(index)

    # What `read_label_ids` returns (file_datasets.LabelFormat); None: train ids.
    label_format = None
    # What opening the split left out of it, one line per reason (symlink loops,
    # broken links: `data_pipelines.listing`); the dataset check reports them.
    skipped = ()

    def read_pair(self, index):
        """(read_image(index), read_label(index)); subclasses may share work."""
        return self.read_image(index), self.read_label(index)

    @property
    def num_resized_labels(self):
        """How many distinct labels were resized to their image's size so far."""
        return 0

    def check_index(self, index):
        """Raises errors.DatasetError unless 0 <= index < len(self)."""
        if not 0 <= index < len(self):
            raise errors.DatasetError(
                f"index {index} is out of range for {self.name}/{self.split} "
                f"({len(self)} images)")

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}/{self.split}: {len(self)} images>"
