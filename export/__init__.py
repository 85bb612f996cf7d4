"""Exports a trained segmenter for deployment: SavedModel for servers, TFLite for boards.

    python -m export --workdir=WORKDIR --output_dir=DIR \
        --formats=saved_model,tflite_float32,tflite_float16,tflite_int8

Only the segmenter leaves the work directory; every artifact takes uint8 RGB
images and normalizes inside its graph. `workdir.py` lists the files written,
`saved_model.py` and `tflite.py` describe their interfaces; each is written
all at once or not at all (`udamobile.files`).
"""
