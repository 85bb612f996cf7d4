"""The data a stage reads, by role, and the streams the stages build from them.

    role                dataset and split
    source train        the labelled source's train split
    target train        the target's train split (unlabelled, but for the oracle)
    evaluation          periodic evaluation: the source's held-out split, unless
                        --eval_dataset names another (`evaluation_split`)
    test                the target's labelled val split, scored at the end of a method
                        (a folder target: the one at --target_val_root, if given)
    label-free signals  target train images and source train labels (`signal_splits`)

A split is (dataset name, root folder, split); how it is read (the SYNTHIA
protocol, the source's label map) is `reading_options`. The streams are pure
functions of the seed and the position (`start_step`), so a resumed run
sees exactly the batches an uninterrupted one would have.
"""
from absl import logging

import data_pipelines
from data_pipelines import demo_shifts, validation
from data_pipelines.datasets import is_built_in
from data_pipelines.folder_dataset import NAME as FOLDER
from udamobile import errors

# The labelled split each target dataset is scored on: the test set, never for choosing.
TEST_SPLITS = {"cityscapes": "val", "demo_target": "val", "demo_city": "val",
               **{shift: "val" for shift in demo_shifts.SHIFTS}}


def source_train(cfg):
    return cfg.data.source, cfg.data.source_root, "train"


def target_train(cfg):
    return cfg.data.target, cfg.data.target_root, "train"


def has_test_split(cfg):
    """Whether the target has a labelled val split: a folder target only with
    --target_val_root."""
    return cfg.data.target in TEST_SPLITS or bool(cfg.data.target == FOLDER
                                                  and cfg.data.target_val_root)


def test_split(cfg):
    """The target's labelled val split (demo_target/val, cityscapes/val, folder/val
    at --target_val_root)."""
    name = cfg.data.target
    if not has_test_split(cfg):
        hint = " (give --target_val_root)" if name == FOLDER else ""
        raise errors.DatasetError(f"target {name} has no labelled val split to score on{hint}")
    if name == FOLDER:
        return name, cfg.data.target_val_root, "val"
    return name, cfg.data.target_root, TEST_SPLITS[name]


def evaluation_split(cfg):
    """The split of periodic evaluation: the source's held-out split by default."""
    run = cfg.run
    name = run.eval_dataset or cfg.data.source
    root = run.eval_root if run.eval_dataset else cfg.data.source_root
    return name, root, run.eval_split or TEST_SPLITS.get(name, "heldout")


def signal_splits(cfg):
    """The splits the label-free signals read: the target's train images and the
    source's train labels; none when they are off, or when the target has no
    folder (a source-only stage run without --target_root)."""
    data = cfg.data
    if not cfg.run.label_free_images or not (is_built_in(data.target) or data.target_root):
        return []
    return [target_train(cfg), source_train(cfg)]


def check_roles(cfg):
    """Raises UsageError for a data flag given for a dataset it does not apply to."""
    data = cfg.data
    for flag, role in (("label_map", "source"), ("target_val_root", "target")):
        if getattr(data, flag) is not None and getattr(data, role) != FOLDER:
            raise errors.UsageError(f"--{flag} applies to --{role}={FOLDER}, not "
                                    f"--{role}={getattr(data, role)}")


def reading_options(cfg, split):
    """The options `split` is opened with (`open_dataset`'s keywords): the SYNTHIA
    protocol, and --label_map for the source's folder, whichever role reads it (its
    held-out split is the periodic evaluation's)."""
    name, root, _ = split
    source = (name, root) == (cfg.data.source, cfg.data.source_root)
    return dict(synthia_classes=cfg.data.synthia_classes,
                label_map=cfg.data.label_map if source else None)


def open_split(cfg, split):
    return data_pipelines.open_dataset(*split, **reading_options(cfg, split))


def evaluation_dataset(cfg):
    """The dataset of periodic evaluation (`evaluation_split`)."""
    split = evaluation_split(cfg)
    if TEST_SPLITS.get(split[0]) == split[2] and cfg.run.eval_every > 0:
        logging.warning(
            "Periodic evaluation on %s/val, the target's test split: choosing a "
            "checkpoint by it selects on the test set (as the authors' code did).", split[0])
    return open_split(cfg, split)


def patch_shape(cfg):
    """(height, width) of the training images: the patch, or the rescaled whole image."""
    size = cfg.data.patch_size
    return (size, 2 * size) if cfg.data.whole_images else (size, size)


def _stream_options(cfg, start_step, bad_files):
    """What every training stream takes from the config: shapes, batch, seed, position.
    Files that cannot be read are recorded in `bad_files` (data_pipelines.BadFiles)."""
    data = cfg.data
    return dict(patch_size=patch_shape(cfg), whole_images=data.whole_images,
                batch_size=cfg.optim.batch_size, flip=data.flip, seed=cfg.run.seed,
                start_batch=start_step, bad_files=bad_files)


def labelled_patches(cfg, split, start_step, bad_files, image_transform=None):
    """Batches of {"image", "label"} from a labelled split."""
    return data_pipelines.supervised_patches(
        open_split(cfg, split), resize_width=cfg.data.resize_width,
        image_transform=image_transform, **_stream_options(cfg, start_step, bad_files))


def image_patches(cfg, split, start_step, bad_files):
    """Batches of {"image"} from a split whose labels are never read."""
    return data_pipelines.unlabelled_patches(open_split(cfg, split),
                                             resize_width=cfg.data.resize_width,
                                             **_stream_options(cfg, start_step, bad_files))


def unpaired_patches(cfg, start_step, bad_files, pseudo_labelled=None,
                     source_image_transform=None):
    """Batches of {"source_image", "source_label", "target_image"}: a labelled source
    patch beside an unrelated target patch; with `pseudo_labelled` (a dataset of the
    target's images and pseudo-labels) also "target_label". `source_image_transform`
    maps each source image (`data_pipelines.unpaired_patches`)."""
    width = cfg.data.resize_width
    target = pseudo_labelled or open_split(cfg, target_train(cfg))
    return data_pipelines.unpaired_patches(
        open_split(cfg, source_train(cfg)), target, resize_width_source=width,
        resize_width_target=width, target_labels=pseudo_labelled is not None,
        source_image_transform=source_image_transform,
        **_stream_options(cfg, start_step, bad_files))


def datasets_used(cfg, stage):
    """[(name, root, split)] `stage` reads, each once: its training data, and if it has
    a segmenter to score the split it evaluates on and those of the label-free signals."""
    used = list(stage.train_splits(cfg))
    if stage.evaluates:
        used.append(evaluation_split(cfg))
        used += signal_splits(cfg)
    return list(dict.fromkeys(used))


def check_data(cfg, datasets):
    """Decodes a sample of each of `datasets` ([(name, root, split)]); raises on any problem.

    Catches a wrong folder or label format at start-up rather than hours in.
    Returns {(name, root, split): DatasetReport}.
    """
    reports = {}
    for name, root, split in datasets:
        options = reading_options(cfg, (name, root, split))
        report = data_pipelines.check_dataset(name, root, split, **options)
        logging.info("%s", report)
        if not report.ok:
            command = validation.full_check_command(name, root, split, **options)
            raise errors.DatasetError(
                f"dataset check failed: {report.summary()} (the report above lists them; "
                f"{command} decodes every file)")
        reports[name, root, split] = report
    return reports


def upscaling_note(image_size, resize_width, patch_size):
    """What a patch larger than the image resized to `resize_width` costs, or None.

    Such a patch would be mostly padding; the pipelines widen the resize
    instead (`data_pipelines.crop_fitting_size`), so the images are
    upscaled: a patch then holds no padding but less of the scene.
    """
    import tensorflow as tf  # here: the declarations above need no TensorFlow

    height, width = image_size
    wanted = width if resize_width is None else resize_width
    fitted = [int(v) for v in data_pipelines.crop_fitting_size(
        tf.constant([height, width]), resize_width, patch_size)]
    if fitted[1] <= wanted:
        return None
    return (f"a {patch_size[1]}x{patch_size[0]} patch does not fit a {width}x{height} image "
            f"resized to width {wanted}: it is resized to {fitted[1]}x{fitted[0]} instead, "
            f"{fitted[1] / wanted:.1f}x wider, so that patches hold no padding")


def warn_of_upscaling(cfg, stage, reports):
    """Logs `upscaling_note` for the most common image size of each training split."""
    if cfg.data.whole_images:
        return  # whole images are rescaled to the patch size, as meant
    for name, root, split in stage.train_splits(cfg):
        sizes = reports[name, root, split].image_sizes
        note = sizes and upscaling_note(sizes.most_common(1)[0][0], cfg.data.resize_width,
                                        patch_shape(cfg))
        if note:
            logging.warning("%s/%s: --patch_size=%d: %s", name, split, cfg.data.patch_size, note)
