"""What `udamobile-predict` is asked: its options and its --input, checked before any model loads.

    --input             what is segmented                        outputs mirror paths relative to
    a folder            its .jpg/.jpeg/.png files, any case,     the folder
                        in it and below it (through links)
    a glob (quoted)     the image files it matches               its fixed leading folder
                                                                 ("runs/*/frames/*.png": runs)
    an image file       itself                                   its folder
    a video file        its frames (.mp4 .avi .mov .mkv .webm)   - (one overlay video)

Each image's outputs are named by its relative path without its extension;
two images that differ only by it (a.jpg, a.png) keep it (a.jpg.png, a.png.png),
so that neither overwrites the other. The output folder may not lie inside the
folder the images are listed from: the next run would segment the overlays.
Nothing here imports TensorFlow, so that a mistyped path or flag fails in a
second, before TensorFlow starts.
"""
import collections
import dataclasses
import glob
import os

import cv2

from data_pipelines.folder_dataset import IMAGE_EXTENSIONS, files_below
from data_pipelines.listing import Listing, is_within
from udamobile import checks, config as config_lib, errors

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclasses.dataclass(frozen=True)
class Images:
    """Image files to segment, sorted, each with the name its outputs take."""
    input: str  # the --input given
    kind: str  # "folder", "glob" or "image"
    root: str  # the folder their relative paths start from
    paths: tuple  # the image files
    names: tuple  # per file: its path relative to `root`, without extension unless shared
    listing_skipped: tuple = ()  # links the folder listing left out, one line per reason


@dataclasses.dataclass(frozen=True)
class Video:
    """A video file whose first frame decodes, with what its header says."""
    path: str
    fps: float
    size: tuple  # (height, width)
    frames: int  # the header's count; 0 when it gives none

    @property
    def kind(self):
        return "video"

    @property
    def input(self):
        return self.path


def _extension(path):
    return os.path.splitext(path)[1].lower()


def output_names(relatives):
    """Each relative path without its extension, kept where two would share the name."""
    stems = [os.path.splitext(relative)[0] for relative in relatives]
    shared = {stem for stem, count in collections.Counter(stems).items() if count > 1}
    return tuple(relative if stem in shared else stem for relative, stem in zip(relatives, stems))


def _images(input, kind, root, paths, listing_skipped=()):
    paths = sorted(paths, key=lambda path: os.path.relpath(path, root))
    relatives = [os.path.relpath(path, root) for path in paths]
    return Images(input, kind, root, tuple(paths), output_names(relatives),
                  tuple(listing_skipped))


def _folder_images(folder):
    listing = Listing()
    paths = [path for _, path in files_below(listing, folder, IMAGE_EXTENSIONS)]
    if not paths:
        raise errors.DatasetError(f"--input {folder}: no .jpg, .jpeg or .png file in the "
                                  "folder or below it")
    return _images(folder, "folder", folder, paths, listing.skipped)


def glob_root(pattern):
    """The leading folders of `pattern` that hold no wildcard ("." when the first does)."""
    root = os.path.dirname(pattern)
    while glob.has_magic(root):
        root = os.path.dirname(root)
    return root or "."


def _glob_images(pattern):
    paths = [path for path in glob.glob(pattern, recursive=True)
             if os.path.isfile(path) and _extension(path) in IMAGE_EXTENSIONS]
    if not paths:
        raise errors.DatasetError(f"--input {pattern}: the pattern matches no .jpg, .jpeg or "
                                  ".png file")
    return _images(pattern, "glob", glob_root(pattern), paths)


def open_video(path):
    """The Video at `path`; raises DatasetError unless its first frame decodes."""
    capture = cv2.VideoCapture(path)
    try:
        decoded, frame = capture.read()
        if not decoded:
            raise errors.DatasetError(f"--input {path}: the video cannot be decoded (no "
                                      "frames); is it truncated, or in a codec OpenCV lacks?")
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        capture.release()
    return Video(path, fps, frame.shape[:2], frames)


def _file(path):
    extension = _extension(path)
    if extension in IMAGE_EXTENSIONS:
        return _images(path, "image", os.path.dirname(path) or ".", [path])
    if extension in VIDEO_EXTENSIONS:
        return open_video(path)
    raise errors.DatasetError(
        f"--input {path}: unknown extension {extension or '(none)'!r}; expected an image "
        f"({', '.join(IMAGE_EXTENSIONS)}), a video ({', '.join(VIDEO_EXTENSIONS)}), a folder "
        "or a quoted glob pattern")


def check_output_outside(images, output_dir):
    """Raises UsageError if `output_dir` is the folder `images` are listed from or lies in it."""
    if images.kind == "image":
        return
    root, output = os.path.realpath(images.root), os.path.realpath(output_dir)
    if is_within(output, root):
        raise errors.UsageError(
            f"--output_dir {output_dir} is inside the folder --input {images.input} lists "
            f"images from ({root}): a later run would segment its overlays; choose an "
            "output folder elsewhere")


def resolve(input, output_dir):
    """The Images or Video --input names; raises a UserError naming it if there is none."""
    if os.path.isdir(input):
        source = _folder_images(input)
    elif os.path.isfile(input):
        source = _file(input)
    elif glob.has_magic(input):
        source = _glob_images(input)
    else:
        raise errors.DatasetError(f"--input {input} does not exist")
    if isinstance(source, Images):
        check_output_outside(source, output_dir)
    return source


def check_options(*, batch_size, input_width, num_threads, alpha):
    """Raises UsageError naming the first option of udamobile-predict that cannot work."""
    checks.check_flags({
        "batch_size": (batch_size, checks.positive_int),
        "input_width": (input_width, config_lib.field_check("eval_input_width")),
        "num_threads": (num_threads, checks.positive_int),
        "alpha": (alpha, checks.within(0, 1))})
