"""model_card.md of an export folder: what the files are, how well they do, what they are for.

Pure functions from records to markdown; export/artifacts.py gathers the
records (the stage's Config, export.json's manifest, the method folder's
method.json and results.json, the export report) and writes the file:

    # Model card            what the files do, in one paragraph
    ## Training             method, stages run, stage exported, preset, datasets
    ## Scores               per-class IoU of the method's stages (results.json) and
                            of every file exported (the export report), or why none
    ## Export report        what int8 (and each format) costs, when a report was made
    ## Inputs and outputs   the TFLite files' and the SavedModel's contracts
    ## Intended use, ## Known limits
    ## Provenance           udamobile version, commit, date, machine
"""
from udamobile import provenance
from udamobile.evaluation.report import iou_columns, signals_table, text_table

CARD_FILE = "model_card.md"


def _code(text):
    return f"```text\n{text.rstrip()}\n```"


def _root(root):
    return f"`{root}`" if root else "built in (generated)"


def _table(pairs):
    """A two-column markdown table of (name, value) pairs."""
    return "\n".join(["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in pairs)])


def summary(cfg):
    return (f"# Model card: a udamobile segmenter\n\nDeepLabV3+ with a MobileNetV2 encoder "
            f"(width {cfg.model.width_multiplier:g}) that labels every pixel of a street "
            "image with one of the 19 Cityscapes classes, trained by udamobile, a "
            "reproduction of Toldo et al., \"Unsupervised Domain Adaptation for Mobile "
            "Semantic Segmentation based on Cycle Consistency and Feature Alignment\" "
            "(Image and Vision Computing, 2020): trained with the labels of "
            f"{cfg.data.source} and adapted, without labels, to {cfg.data.target}.")


def training_section(cfg, manifest, method=None):
    """Method and stages (method.json, when the stage is part of a method folder), the
    stage exported, the datasets with their roots."""
    pairs = []
    if method is not None:
        pairs += [("method", f"`{method['method']}` (`udamobile-train --method="
                             f"{method['method']}`)"),
                  ("stages run", " -> ".join(f"`{stage}`" for stage in method["stages"]))]
    pairs += [("stage exported", f"`{cfg.stage}`, checkpoint `{manifest['checkpoint']}` "
                                 f"(step {manifest['step']})"),
              ("its work directory", f"`{manifest['workdir']}` (its `config.json` holds "
                                     "every setting)"),
              ("preset", f"`{cfg.preset}`"),
              ("source (labelled)", f"{cfg.data.source}, {_root(cfg.data.source_root)}"),
              ("target (unlabelled)", f"{cfg.data.target}, {_root(cfg.data.target_root)}")]
    if "int8_calibration" in manifest:
        pairs.append(("int8 calibration", manifest["int8_calibration"]))
    return "## Training\n\n" + _table(pairs)


def iou_table(results_by_title):
    """Per-class IoU (%) and mIoU, one column per result ({title: {"iou", "miou"}})."""
    rows, columns = iou_columns(results_by_title)
    return _code(text_table(rows, columns))


def stale_scores(results, stage, step):
    """A warning when results.json scored another step of the exported `stage` than
    `step`, the one exported (a --checkpoint export, or a stage trained on since); else None."""
    scored = results.get(stage, {}).get("model", {}).get("step")
    if scored is None or scored == step:
        return None
    return (f"These scores are of `{stage}` at step {scored}, not of the step exported "
            f"({step}): score the exported files for theirs.")


def scores_section(results=None, report_rows=None, report_scope=None, *, stage, step):
    """The IoU tables the export has: the method's stages (results.json; exported:
    `stage` at `step`) and the files exported (the report's rows); without either, a
    sentence saying there are none."""
    parts = ["## Scores"]
    # A whole run without target labels leaves label-free signals in results.json.
    scored = {name: r for name, r in (results or {}).items() if "iou" in r}
    signals = {name: r for name, r in (results or {}).items() if "mean_entropy" in r}
    if scored:
        parts += ["Each stage of the method on the target's labelled val split, IoU % "
                  "(the method folder's `results.json`):", iou_table(scored)]
        warning = stale_scores(scored, stage, step)
        if warning:
            parts.append(warning)
    if signals:
        parts += ["No target labels were given to the run, so there is no IoU. The "
                  "label-free signals of each stage on the target's unlabelled images "
                  "(the method folder's `results.json`; indications, not scores):",
                  _code(signals_table(signals))]
    if report_rows:
        parts += [f"Each file exported on {report_scope}, IoU % (the export report):",
                  iou_table({row["artifact"]: row for row in report_rows})]
    if len(parts) == 1:
        parts.append("No scores: no labelled target split was given to the export "
                     "(`--report_dataset`) and the work directory is not part of a method "
                     "folder with a `results.json`. How well these files label the target "
                     "is not known; score them with `udamobile-evaluate --model=<file>` on "
                     "labelled target images before relying on them.")
    return "\n\n".join(parts)


def report_section(report_text):
    return ("## Export report\n\nWhat each format costs against the Keras model it was "
            "exported from (`export_report.txt`):\n\n" + _code(report_text))


def interface_section(manifest):
    """The contracts of the files in `manifest["artifacts"]`."""
    artifacts = manifest["artifacts"]
    lines = ["## Inputs and outputs", ""]
    tflite = [name for fmt, name in artifacts.items() if fmt != "saved_model"]
    if tflite:
        lines.append(f"- TFLite ({', '.join(f'`{n}`' for n in tflite)}): "
                     f"{manifest['tflite_input']} -> {manifest['tflite_output']}; train id i "
                     "is line i (from 0) of `labels.txt`, its colour line i of `palette.txt` "
                     "(both beside the files and inside each as metadata).")
    if "saved_model" in artifacts:
        lines.append("- SavedModel (`saved_model/`), signature `serving_default`: uint8 RGB "
                     "`images` [batch, height, width, 3] of any size -> `labels` int32 "
                     "[batch, height, width] train ids and `probabilities` float32 "
                     "[batch, height, width, 19]; at most "
                     f"{manifest['saved_model_max_batch_pixels']:,} pixels a call. Signature "
                     "`classes`: `names` string [19] and `palette` uint8 [19, 3] "
                     "(`assets/labels.txt`, `assets/palette.txt`).")
    lines.append("- Pixels are normalized inside every graph: give the camera's uint8 RGB "
                 "image as it is (resized to the TFLite files' fixed size).")
    return "\n".join(lines)


def use_and_limits_section(cfg):
    return "\n".join([
        "## Intended use", "",
        "Research and demonstration of unsupervised domain adaptation for semantic "
        "segmentation on mobile and embedded CPUs: labelling street scenes like those of "
        f"{cfg.data.target}, offline or on a board.", "",
        "## Known limits", "",
        f"- Trained on {cfg.data.source} images adapted to {cfg.data.target}: on other "
        "cities, cameras, weather, times of day or viewpoints its accuracy is unknown and "
        "likely lower. Score it on labelled images of the place it is used.",
        "- Not validated for safety-critical use: no driving, braking or other decision "
        "about people may rely on it.",
        "- It knows the 19 Cityscapes classes only; every pixel gets one of them, with no "
        "\"unknown\" answer, whatever the object.",
        "- Adaptation without target labels closes only part of the gap to a segmenter "
        "trained with them: in the paper, 41.1 mIoU against 70.6 on GTA5 -> Cityscapes."])


def provenance_section(written_by, machine):
    found = written_by.get("commit")
    commit = "not a git checkout" if not found else (
        f"`{found}`" + (" (with uncommitted changes)" if written_by.get("modified") else ""))
    return "## Provenance\n\n" + _table([
        ("written by", provenance.describe(written_by)), ("commit", commit),
        ("date (UTC)", written_by["date"]), ("machine", machine)])


def model_card(cfg, manifest, *, machine, method=None, results=None, report=None):
    """The markdown of model_card.md.

    Args:
      cfg: the Config of the stage exported.
      manifest: export.json's record (export/artifacts.py), with its "provenance".
      machine: udamobile.machine.describe() of the machine exporting.
      method: the method folder's method.json record, if the stage is in one.
      results: the method folder's results.json ({stage: scores}), if any.
      report: {"rows", "scope", "text"} of the export report, if one was made.
    """
    report = report or {}
    sections = [summary(cfg), training_section(cfg, manifest, method),
                scores_section(results, report.get("rows"), report.get("scope"),
                               stage=cfg.stage, step=manifest["step"])]
    if report:
        sections.append(report_section(report["text"]))
    sections += [interface_section(manifest), use_and_limits_section(cfg),
                 provenance_section(manifest["provenance"], machine)]
    return "\n\n".join(sections) + "\n"
