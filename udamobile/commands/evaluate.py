r"""Evaluates a segmenter with the paper's protocol: per-class IoU and mIoU.

    udamobile-evaluate --model=runs/gta5_adapted --dataset=cityscapes \
        --root=/data/cityscapes --split=val --protocol=19 --compare_paper=gta5
    udamobile-evaluate --model=exports/segmenter_512x1024_int8.tflite \
        --dataset=demo_target --split=val
    udamobile-evaluate --model=runs/own/export/saved_model --dataset=folder \
        --root=/data/my_camera_val --split=val

--model is a training work directory (latest checkpoint, or --checkpoint), an
exported SavedModel directory or a .tflite file. Prints a per-class table and
writes the results as JSON (--output_json; by default a work directory's
<workdir>/eval/). See udamobile/evaluation/scoring.py for the protocol.
(`python evaluate.py` in a checkout runs the same program.)
"""
from absl import flags

from data_pipelines import cli
from udamobile import config as config_lib, errors

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Work directory, SavedModel directory or .tflite file.")
flags.DEFINE_string("checkpoint", None, "Checkpoint of the work directory: latest (default), "
                    "best (of its periodic evaluation) or a name such as ckpt-12.")
flags.DEFINE_string("dataset", "cityscapes", "gta5, synthia, cityscapes, folder (your own "
                    "labelled images, docs/datasets.md), demo_source, demo_target, demo_city or "
                    "a demo shift (demo_tone, demo_fog, ...).")
flags.DEFINE_string("root", None, "Folder of the dataset (none for the demo domains).")
flags.DEFINE_string("split", "val", "Split to evaluate (a labelled one).")
flags.DEFINE_string("label_map", None, "--dataset=folder: JSON file mapping the ids of its "
                    "label files to train ids (none: they hold train ids).")
flags.DEFINE_enum("protocol", "19", ["19", "16", "13"], "Classes averaged in the mIoU.")
flags.DEFINE_integer("input_width", None, "Downscale inputs to this width (aspect kept); "
                     "predictions are still scored at the label resolution.")
flags.DEFINE_string("output_json", None, "Where to write the results JSON.")
flags.DEFINE_string("save_predictions_dir", None, "Write image | prediction | label panels "
                    "(colourized PNGs) here.")
flags.DEFINE_enum("compare_paper", None, ["gta5", "synthia"], "Show the paper's table "
                  "(GTA5 19 classes or SYNTHIA 16 classes) beside our numbers.")
flags.DEFINE_integer("num_threads", 2, "Threads of the TFLite interpreter.")
flags.DEFINE_integer("max_images", 0, "Evaluate only the first N images (0: all).")
flags.DEFINE_integer("max_bad_files", config_lib.RunConfig.max_bad_files,
                     "Images or labels that cannot be read (truncated, "
                     "corrupt, a label of another size) skipped and listed in the results; "
                     "one more stops the evaluation naming the last. 0: stop at the first. The "
                     "default is train.py's (see its --max_bad_files).")
flags.mark_flag_as_required("model")


def main(argv):
    cli.reject_arguments(argv)
    from udamobile.evaluation import scoring  # after flag parsing: importing TF is slow

    results, table = scoring.run_evaluation(
        FLAGS.model, checkpoint=FLAGS.checkpoint, dataset=FLAGS.dataset, root=FLAGS.root,
        split=FLAGS.split, protocol=int(FLAGS.protocol), input_width=FLAGS.input_width,
        output_json=FLAGS.output_json, predictions_dir=FLAGS.save_predictions_dir,
        compare_paper=FLAGS.compare_paper, num_threads=FLAGS.num_threads,
        max_images=FLAGS.max_images, max_bad_files=FLAGS.max_bad_files,
        label_map=FLAGS.label_map)
    print(table)
    if scoring.write_results(results):
        print(f"results written to {results['results_path']}")
    panels = results.get("prediction_panels")
    if panels and panels["failure"]:
        raise errors.EvaluationError(f"{panels['folder']}: {panels['failure']}")
    if panels:
        print(f"{panels['written']} prediction panels written to {panels['folder']}")


def run():
    cli.run("evaluate.py", main)


if __name__ == "__main__":
    run()
