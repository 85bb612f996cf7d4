"""Segments a user's images or video with a segmenter in any of its forms (`udamobile-predict`).

    summary = predict_path("runs/gta5_adapted", "footage/", "predictions/", panels=True)

For images (a folder, a quoted glob or one file: udamobile/inference_inputs.py),
under the output folder, by each image's path relative to its input folder:

    labels/<name>.png     uint8 train ids at the image's own size
    overlays/<name>.jpg   the image blended with its colourized labels (opacity `alpha`)
    panels/<name>.jpg     with `panels`: the image | its colourized labels
    predict.json          the summary `predict_path` returns

For a video, <stem>_overlay.mp4: every frame blended, at the input's frame
rate and size. Labels are predicted at the image's size as evaluation
predicts them at the labels' (model_adapters). Every file is written
atomically (files.atomic_output), so a stopped run resumes: an image whose
outputs all exist, or a video whose overlay exists, is not segmented again.
A file that cannot be read is logged, skipped and listed in the summary.
"""
import os

import cv2
import numpy as np
from absl import logging

import data_pipelines
from data_pipelines import readers
from data_pipelines.classes import colorize
from udamobile import errors, files, inference_inputs
from udamobile.evaluation import scoring
from udamobile.evaluation.model_adapters import TFLiteSegmenter, open_model
from udamobile.progress import Progress

SUMMARY_FILE = "predict.json"
JPEG_QUALITY = 90
VIDEO_CODEC = "mp4v"  # OpenCV's own MPEG-4 encoder: every opencv-python build has it
FALLBACK_FPS = 25.0  # for a video whose header gives no frame rate


# --- pictures -------------------------------------------------------------------

def blend(image, labels, alpha):
    """uint8 [H, W, 3] RGB `image` under its colourized [H, W] `labels` at opacity `alpha`."""
    return cv2.addWeighted(image, 1.0 - alpha, colorize(labels), alpha, 0.0)


def panel(image, labels):
    """uint8 [H, 2W, 3]: the image | its colourized labels."""
    return np.concatenate([image, colorize(labels)], axis=1)


def encoded(extension, image):
    """The bytes of a ".png" or ".jpg" file of uint8 [H, W] grey or [H, W, 3] RGB `image`."""
    if image.ndim == 3:
        image = image[..., ::-1]  # OpenCV writes BGR
    options = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension == ".jpg" else []
    _, data = cv2.imencode(extension, np.ascontiguousarray(image), options)
    return data.tobytes()


# --- predictions ----------------------------------------------------------------

def predicted_labels(model, images, input_width=None):
    """uint8 [B, H, W, 3] RGB images of one size -> int32 [B, H, W] train ids at that
    size; downscaled first to `input_width` columns (aspect kept) if it is set."""
    size = images.shape[1:3]
    if input_width is not None:
        images = np.stack([data_pipelines.resize_to_width(
            data_pipelines.normalize_image(image), width=input_width)[0] for image in images])
    try:
        labels = model.predict_batch(images, size)
    except errors.ModelError as error:
        if len(images) == 1:
            raise
        raise errors.ModelError(f"{error}, or lower --batch_size={len(images)}") from error
    scoring.check_predictions(labels, model)
    return labels


def batch_size_for(model, batch_size):
    """`batch_size`, or the most images a call of `model` takes if it takes fewer."""
    if model.max_batch is None or batch_size <= model.max_batch:
        return batch_size
    logging.warning("--batch_size=%d: %s takes %d image(s) a call; running batches of %d",
                    batch_size, model.identity.describe(), model.max_batch, model.max_batch)
    return model.max_batch


# --- images ---------------------------------------------------------------------

def output_paths(output_dir, name, panels):
    """{kind: path} of the outputs of the image whose output name is `name`."""
    paths = {"labels": os.path.join(output_dir, "labels", name + ".png"),
             "overlays": os.path.join(output_dir, "overlays", name + ".jpg")}
    if panels:
        paths["panels"] = os.path.join(output_dir, "panels", name + ".jpg")
    return paths


def pending(images, output_dir, panels):
    """([(path, output paths)] of the images with an output missing, how many have all)."""
    todo = []
    for path, name in zip(images.paths, images.names):
        outputs = output_paths(output_dir, name, panels)
        if not all(os.path.isfile(output) for output in outputs.values()):
            todo.append((path, outputs))
    return todo, len(images.paths) - len(todo)


def _skip(skipped, message):
    logging.warning("Skipped %s", message)
    skipped.append(message)


def _image_batches(todo, batch_size, skipped):
    """Lists of up to `batch_size` (path, output paths, uint8 RGB image) of one size, in
    order. A file that cannot be read is logged, its message added to `skipped`, and left
    out."""
    batch = []
    for path, outputs in todo:
        try:
            image = readers.read_photo(path)
        except errors.DatasetError as error:
            _skip(skipped, str(error))
            continue
        if batch and (len(batch) == batch_size or batch[0][2].shape != image.shape):
            yield batch
            batch = []
        batch.append((path, outputs, image))
    if batch:
        yield batch


def _write_outputs(outputs, image, labels, alpha):
    files.write_bytes(outputs["labels"], encoded(".png", labels.astype(np.uint8)))
    files.write_bytes(outputs["overlays"], encoded(".jpg", blend(image, labels, alpha)))
    if "panels" in outputs:
        files.write_bytes(outputs["panels"], encoded(".jpg", panel(image, labels)))


def predict_images(model, images, output_dir, *, panels, batch_size, input_width, alpha):
    """Writes the outputs of each of `images` (inference_inputs.Images) not done yet."""
    todo, done = pending(images, output_dir, panels)
    if done:
        print(f"{done} of {len(images.paths)} images already done (all their outputs exist); "
              f"segmenting the other {len(todo)}")
    # A stopped run leaves what it was writing in staging folders, never at an output's
    # name; they would hold half-written pictures for a tool that walks the folders.
    for folder in sorted({os.path.dirname(p) for _, outputs in todo for p in outputs.values()}):
        files.remove_leftovers_in(folder)
    skipped = []
    with Progress(len(todo), "predict", unit="img") as progress:
        for batch in _image_batches(todo, batch_size, skipped):
            try:
                labels = predicted_labels(model, np.stack([image for *_, image in batch]),
                                          input_width)
            except errors.ModelError as error:
                if len(batch) > 1:
                    raise
                # An image this model cannot take (of another aspect than a .tflite's
                # input, over a SavedModel's pixels); the others may suit it.
                _skip(skipped, f"{batch[0][0]}: {error}")
                continue
            for (_, outputs, image), image_labels in zip(batch, labels):
                _write_outputs(outputs, image, image_labels, alpha)
            progress.update(len(batch))
    return {"images": len(images.paths), "segmented": progress.count, "already_done": done,
            "skipped": skipped, "listing_skipped": list(images.listing_skipped),
            "images_per_second": progress.rate()}


# --- a video --------------------------------------------------------------------

def _frame_batches(path, batch_size):
    """uint8 [B, H, W, 3] RGB frames of the video at `path`, `batch_size` at a time."""
    capture = cv2.VideoCapture(path)
    try:
        batch = []
        while True:
            decoded, frame = capture.read()
            if decoded:
                batch.append(frame[..., ::-1])
            if batch and (not decoded or len(batch) == batch_size):
                yield np.stack(batch)
                batch = []
            if not decoded:
                return
    finally:
        capture.release()


def _video_writer(path, fps, size):
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps, size[::-1])
    if not writer.isOpened():
        raise OSError(None, f"OpenCV cannot write a {VIDEO_CODEC} video here", path)
    return writer


def overlay_video_path(output_dir, video):
    stem = os.path.splitext(os.path.basename(video.path))[0]
    return os.path.join(output_dir, f"{stem}_overlay.mp4")


def predict_video(model, video, output_dir, *, batch_size, input_width, alpha):
    """Writes the overlay video of `video` (inference_inputs.Video) unless it exists."""
    path = overlay_video_path(output_dir, video)
    fps = video.fps if video.fps > 0 else FALLBACK_FPS
    summary = {"output": os.path.abspath(path), "fps": fps, "size": list(video.size)}
    if os.path.isfile(path):
        print(f"{path} is already done; remove it to segment {video.path} again")
        return {**summary, "frames": 0, "already_done": 1}
    files.remove_leftovers(path)
    with files.atomic_output(path) as staging, \
            Progress(video.frames or None, "predict", unit="frame") as progress:
        writer = _video_writer(staging, fps, video.size)
        try:
            for frames in _frame_batches(video.path, batch_size):
                for frame, labels in zip(frames, predicted_labels(model, frames, input_width)):
                    writer.write(np.ascontiguousarray(blend(frame, labels, alpha)[..., ::-1]))
                progress.update(len(frames))
        finally:
            writer.release()
    if video.frames and progress.count != video.frames:
        logging.warning("%s: %d frames decoded where its header counts %d; the overlay video "
                        "has the %d decoded", video.path, progress.count, video.frames,
                        progress.count)
    return {**summary, "frames": progress.count, "already_done": 0,
            "frames_per_second": progress.rate()}


# --- the program ----------------------------------------------------------------

def _opened(model, num_threads):
    if isinstance(model, (str, os.PathLike)):
        return open_model(os.fspath(model), num_threads=num_threads)
    return model


def predict_path(model, input, output_dir, *, panels=False, batch_size=1, input_width=None,
                 num_threads=2, alpha=0.5):
    """Segments the images or video `input` names into `output_dir` (see the module doc).

    Args:
      model: a work directory, SavedModel directory or .tflite file, or a model
        model_adapters.open_model opened.
      input: a folder, a glob pattern, an image or a video file, or what
        inference_inputs.resolve made of one.
      panels: also write image | labels panels (images only).
      batch_size: images of one size segmented per call (a .tflite takes one).
      input_width: downscale images to this width first (aspect kept); labels
        are still predicted at the image's size.
      num_threads: threads of the TFLite interpreter.
      alpha: opacity of the colourized labels over the image, in [0, 1].

    Returns the summary written to predict.json: the model's identity, the input,
    the options, the counts ("segmented", "already_done", "skipped": the messages
    of the files that could not be read) and the rate. Raises DatasetError when
    every image failed.
    """
    inference_inputs.check_options(batch_size=batch_size, input_width=input_width,
                                   num_threads=num_threads, alpha=alpha)
    source = input
    if isinstance(input, (str, os.PathLike)):
        source = inference_inputs.resolve(os.fspath(input), output_dir)
    model = _opened(model, num_threads)
    if isinstance(model, TFLiteSegmenter):
        model.check_input_width(input_width)
    options = dict(batch_size=batch_size_for(model, batch_size), input_width=input_width,
                   alpha=alpha)
    if isinstance(source, inference_inputs.Video):
        counts = predict_video(model, source, output_dir, **options)
    else:
        counts = predict_images(model, source, output_dir, panels=panels, **options)
    summary = {"model": model.identity.as_json(), "input": source.input, "kind": source.kind,
               "output_dir": os.path.abspath(output_dir), "panels": panels, **options, **counts}
    files.write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    if counts.get("skipped") and not counts["segmented"] and not counts["already_done"]:
        raise errors.DatasetError(f"--input {source.input}: none of its {counts['images']} "
                                  f"image(s) could be segmented; the first: {counts['skipped'][0]}")
    return summary


def report(summary):
    """The line udamobile-predict ends with: what was done, how fast, where it went."""
    if summary["kind"] == "video":
        if summary["already_done"]:
            return f"nothing to do: {summary['output']} exists"
        return (f"{summary['frames']} frames segmented at {summary['frames_per_second']:.2f} "
                f"frames/s: {summary['output']}")
    skipped = summary["skipped"]
    return (f"{summary['segmented']} of {summary['images']} images segmented at "
            f"{summary['images_per_second']:.2f} images/s ({summary['already_done']} already "
            f"done, {len(skipped)} skipped); outputs and {SUMMARY_FILE} in "
            f"{summary['output_dir']}")
