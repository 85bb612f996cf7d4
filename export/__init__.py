"""Exports a trained segmenter for deployment: SavedModel for servers, TFLite for boards.

    python -m export --workdir=WORKDIR --output_dir=DIR \
        --formats=saved_model,tflite_float32,tflite_float16,tflite_int8

Only the segmenter leaves the work directory; every artifact takes uint8 RGB
images and normalizes inside its graph. `artifacts.py` lists the files written,
`saved_model.py` and `tflite.py` describe their interfaces; the output folder
is written all at once or not at all (`udamobile.files`).
"""

# The manifest of an export folder (what was exported, from where); here, so
# that udamobile.model_adapters reads it without importing the writers.
MANIFEST = "export.json"
