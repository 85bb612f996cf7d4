r"""udamobile-export (or python -m export): the segmenter of a work directory as SavedModel and TFLite files.

    python -m export --workdir=runs/gta5_adapted --output_dir=exports/gta5 \
        --formats=saved_model,tflite_float32,tflite_float16,tflite_int8 \
        --height=512 --width=1024 --representative_dataset=cityscapes \
        --representative_root=/data/cityscapes --num_calibration_images=100 \
        --report_dataset=cityscapes --report_root=/data/cityscapes

--output_dir is written whole, or left as it was: it must be new, empty or
a previous export, which it replaces. See export/artifacts.py for the files
written, export/saved_model.py and export/tflite.py for their interfaces,
export/report.py for the report.
"""
from absl import flags

from data_pipelines import cli
from export import MAX_BATCH_PIXELS

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training work directory to export the segmenter of.")
flags.DEFINE_string("checkpoint", None, "latest (default), best (of the periodic evaluation) "
                    "or a checkpoint name such as ckpt-12.")
flags.DEFINE_string("output_dir", None, "Folder the artifacts are written to, whole: a new "
                    "or empty folder, or a previous export, which it replaces.")
flags.DEFINE_list("formats", ["saved_model", "tflite_float32", "tflite_float16", "tflite_int8"],
                  "Artifacts to write: saved_model, tflite_float32, tflite_float16, tflite_int8.")
flags.DEFINE_integer("height", 512, "Fixed input height of the TFLite files.")
flags.DEFINE_integer("width", 1024, "Fixed input width of the TFLite files.")
flags.DEFINE_enum("tflite_output", "labels", ["labels", "stride4_labels", "probabilities"],
                  "What the TFLite files return: uint8 labels [1, H, W] (what a board "
                  "consumes); the same labels taken at the decoder's stride 4 and repeated "
                  "over 4x4 blocks (faster, boundaries on a 4x4 grid; H and W divisible by 4); "
                  "or probabilities [1, H, W, 19] (a softmax over every pixel).")
flags.DEFINE_integer("max_batch_pixels", MAX_BATCH_PIXELS, "The most pixels (batch x height "
                     "x width) one call of the SavedModel takes; a larger batch fails that "
                     "call (the default, four 1024x2048 images, takes about 2.8 GB).")
flags.DEFINE_string("representative_dataset", None, "Dataset whose unlabelled train split "
                    "calibrates int8 (default: the run's target dataset).")
flags.DEFINE_string("representative_root", None, "Folder of --representative_dataset.")
flags.DEFINE_integer("num_calibration_images", 100, "Images calibrating int8.")
flags.DEFINE_string("report_dataset", None, "Labelled target dataset on which every artifact "
                    "written is scored (mIoU, agreement with Keras, size, latency); "
                    "no report without it.")
flags.DEFINE_string("report_root", None, "Folder of --report_dataset.")
flags.DEFINE_string("report_split", "val", "Labelled split of --report_dataset.")
flags.DEFINE_integer("report_images", 0, "Score the first N images of the report split "
                     "(0: all).")
flags.mark_flags_as_required(["workdir", "output_dir"])


def main(argv):
    cli.reject_arguments(argv)
    import data_pipelines
    from export.artifacts import export_workdir  # after flag parsing: importing TF is slow

    report_set = None
    if FLAGS.report_dataset:
        report_set = data_pipelines.open_dataset(FLAGS.report_dataset, FLAGS.report_root,
                                                 FLAGS.report_split)
    paths = export_workdir(
        FLAGS.workdir, FLAGS.output_dir, formats=FLAGS.formats, checkpoint=FLAGS.checkpoint,
        height=FLAGS.height, width=FLAGS.width, tflite_output=FLAGS.tflite_output,
        representative_dataset=FLAGS.representative_dataset,
        representative_root=FLAGS.representative_root,
        num_calibration_images=FLAGS.num_calibration_images, report_set=report_set,
        report_images=FLAGS.report_images, max_batch_pixels=FLAGS.max_batch_pixels)
    for fmt, path in paths.items():
        print(f"{fmt:15s} {path}")


def run():
    cli.run("python -m export", main)


if __name__ == "__main__":
    run()
