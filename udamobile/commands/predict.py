r"""Segments your own images or video with a trained or exported segmenter.

    udamobile-predict --model=runs/gta5_adapted --input=footage/ --output_dir=predictions
    udamobile-predict --model=exports/segmenter_512x1024_int8.tflite \
        --input='drives/*/frames/*.png' --output_dir=predictions --panels
    udamobile-predict --model=exports/saved_model --input=drive.mp4 --output_dir=predictions

--model is a training work directory (its latest checkpoint), an exported
SavedModel directory or a .tflite file. --input is a folder (its .jpg, .jpeg
and .png files, below it too), a quoted glob pattern, an image or a video
(.mp4 .avi .mov .mkv .webm). Writes labels/ (uint8 train-id PNGs), overlays/
(JPEGs), with --panels panels/, and predict.json, mirroring the input's
folders; a video gives <name>_overlay.mp4. A stopped run resumes where it
stopped. See docs/predict.md. (`python predict.py` in a checkout runs the same
program.)
"""
from absl import flags

from data_pipelines import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Work directory, SavedModel directory or .tflite file.")
flags.DEFINE_string("input", None, "A folder, a quoted glob pattern, an image or a video file.")
flags.DEFINE_string("output_dir", None, "Where the labels, overlays, panels, overlay video and "
                    "predict.json go; not inside the input folder.")
flags.DEFINE_bool("panels", False, "Also write image | colourized labels panels (images only).")
flags.DEFINE_integer("batch_size", 1, "Images of one size segmented per call by a work "
                     "directory or SavedModel (more is faster, and takes more memory); a "
                     ".tflite file takes one image a call.")
flags.DEFINE_integer("input_width", None, "Downscale inputs to this width (aspect kept) before "
                     "the model; labels are still predicted at the image's size.")
flags.DEFINE_integer("num_threads", 2, "Threads of the TFLite interpreter.")
flags.DEFINE_float("alpha", 0.5, "Opacity of the colourized labels over the image, in [0, 1].")
flags.mark_flags_as_required(["model", "input", "output_dir"])


def main(argv):
    cli.reject_arguments(argv)
    from udamobile import inference_inputs  # no TensorFlow: a bad input fails in a second

    inference_inputs.check_options(batch_size=FLAGS.batch_size, input_width=FLAGS.input_width,
                                   num_threads=FLAGS.num_threads, alpha=FLAGS.alpha)
    source = inference_inputs.resolve(FLAGS.input, FLAGS.output_dir)
    cli.start_tensorflow()
    from udamobile import inference

    summary = inference.predict_path(
        FLAGS.model, source, FLAGS.output_dir, panels=FLAGS.panels, batch_size=FLAGS.batch_size,
        input_width=FLAGS.input_width, num_threads=FLAGS.num_threads, alpha=FLAGS.alpha)
    print(inference.report(summary))


def run():
    cli.run("udamobile-predict", main, uses_tensorflow=False)


if __name__ == "__main__":
    run()
