"""udamobile: unsupervised domain adaptation for mobile semantic segmentation.

A TensorFlow 2 / Keras 3 reproduction of Toldo, Michieli, Agresti and
Zanuttigh, "Unsupervised Domain Adaptation for Mobile Semantic Segmentation
based on Cycle Consistency and Feature Alignment", Image and Vision Computing
2020, and the programs to use it on one's own data. The Python API
(udamobile/api.py, docs/api.md):

    udamobile.train, udamobile.evaluate, udamobile.export, udamobile.predict,
    udamobile.load_segmenter
"""
from udamobile.api import evaluate, export, load_segmenter, predict, train
from udamobile.provenance import VERSION as __version__
__all__ = ["train", "evaluate", "export", "predict", "load_segmenter", "__version__"]
