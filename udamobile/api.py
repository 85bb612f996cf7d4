"""The Python API: what the programs do, as five functions for a notebook or a script.

    import udamobile
    udamobile.train(workdir, preset=..., method=..., **settings)   # udamobile-train
    udamobile.evaluate(model, dataset=..., split=...)             # udamobile-evaluate
    udamobile.export(workdir, output_dir, **options)              # udamobile-export
    udamobile.predict(model, input, output_dir, **options)        # udamobile-predict
    udamobile.load_segmenter(path)                                # a segmenter to call

Each is a thin call into the library function its program calls, with the
program's flags as keyword arguments, and raises the program's errors
(`udamobile.errors.UserError` and its kinds) instead of exiting. Nothing here
imports TensorFlow until a function runs, and then without its start-up lines
(docs/api.md).
"""
import sys

from data_pipelines import cli


def _load_tensorflow():
    """TensorFlow, imported once without the lines its libraries log while loading."""
    if "tensorflow" not in sys.modules:
        cli.import_tensorflow_quietly()


def train(workdir, *, preset="paper_gta5", method=None, stage="all", oracle=False,
          reuse_stages_from=None, keep_method_settings=False, **settings):
    """Trains `method` in `workdir` as `udamobile-train` does.

    Args:
      workdir: the method's folder (one work directory per stage).
      preset, method, stage, oracle, reuse_stages_from, keep_method_settings:
        as the flags of the same names; method None is the paper's (full).
      **settings: config fields (`udamobile.config`; `steps=100`,
        `target="folder"`, ...), applied after the preset and the method.

    Returns:
      With stage="all", {stage: scores on the target's test split} (label-free
      signals when the target has no labels); with one stage, {stage: its
      final scores on its evaluation split}.
    """
    from udamobile.experiments import methods, runner

    _load_tensorflow()
    method = method or methods.PAPER_ROW
    only = None if stage == "all" else stage
    configs = methods.stage_configs(preset, method, settings, only=only,
                                    keep_method_settings=keep_method_settings)
    oracle_config = (methods.stage_configs(preset, methods.ORACLE_ROW, settings)[
        methods.ORACLE_ROW] if oracle else None)
    return runner.run(method, configs, workdir, whole=only is None, reuse_from=reuse_stages_from,
                      oracle=oracle_config)


def evaluate(model, *, dataset="cityscapes", root=None, split="val", protocol=19, **options):
    """Scores `model` (a work directory, SavedModel or .tflite) on a labelled split, as
    `udamobile-evaluate` does; `options` are its other flags (`checkpoint`,
    `input_width`, `output_json`, `max_images`, ...).

    Returns:
      The results: "miou", "per_class_iou", the dataset and the model scored,
      and "table", the text table the program prints. They are written to
      `output_json` only when it is given.
    """
    from udamobile.evaluation import scoring

    _load_tensorflow()
    output_json = options.pop("output_json", None)
    results, table = scoring.run_evaluation(model, dataset=dataset, root=root, split=split,
                                            protocol=protocol, output_json=output_json, **options)
    if output_json:
        scoring.write_results(results)
    else:
        results.pop("results_path")
    return {**results, "table": table}


def export(workdir, output_dir, **options):
    """Exports the segmenter of `workdir` into `output_dir` as `udamobile-export` does;
    `options` are its flags (`formats`, `height`, `width`, `report_set`, ...).

    Returns:
      {format: path} of the files written.
    """
    from export.artifacts import export_workdir

    _load_tensorflow()
    return export_workdir(workdir, output_dir, **options)


def predict(model, input, output_dir, **options):  # noqa: A002 (the program's flag name)
    """Segments a folder, glob or video (`input`) into `output_dir` as `udamobile-predict`
    does; `options` are its flags (`panels`, `batch_size`, ...).

    Returns:
      The run's summary, also written to `output_dir`/predict.json.
    """
    from udamobile.inference import predict_path

    _load_tensorflow()
    return predict_path(model, input, output_dir, **options)


def load_segmenter(path, *, checkpoint=None, num_threads=2):
    """The segmenter of a work directory (its latest checkpoint, or `checkpoint`), a
    SavedModel or a .tflite file, behind one interface:
    `segmenter.predict(image)`, uint8 RGB [H, W, 3] -> int32 [H, W] train ids
    (udamobile/evaluation/model_adapters.py)."""
    from udamobile.evaluation import model_adapters

    _load_tensorflow()
    return model_adapters.open_model(path, checkpoint=checkpoint, num_threads=num_threads)
