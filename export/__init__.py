"""Exports a trained segmenter for deployment: SavedModel for servers, TFLite for boards.

    python -m export --workdir=WORKDIR --output_dir=DIR \
        --formats=saved_model,tflite_float32,tflite_float16,tflite_int8

Only the segmenter leaves the work directory; every artifact takes uint8 RGB
images and normalizes inside its graph. `artifacts.py` lists the files written,
`saved_model.py` and `tflite.py` describe their interfaces; the output folder
is written all at once or not at all (`udamobile.files`).
"""

# The manifest of an export folder (what was exported, from where); here, so
# that udamobile.evaluation.model_adapters reads it without importing the writers.
MANIFEST = "export.json"

# The most pixels (batch x height x width) the SavedModel's serving_default
# takes in one call (export/saved_model.py): four 1024x2048 images. A call
# of the paper's segmenter held 300-330 bytes a pixel beyond the loaded model
# (peak memory measured at 512x1024 and 1024x2048, batches 1 and 2: the
# logits resized to the input, their softmax, the outputs), so 2.8 GB at the
# limit. Defined here, so that `python -m export --help` shows it without
# importing TensorFlow.
MAX_BATCH_PIXELS = 4 * 1024 * 2048
