"""udamobile: unsupervised domain adaptation for mobile semantic segmentation.

A TensorFlow 2 / Keras 3 reproduction of Toldo, Michieli, Agresti and
Zanuttigh, "Unsupervised Domain Adaptation for Mobile Semantic Segmentation
based on Cycle Consistency and Feature Alignment", Image and Vision Computing
2020.
"""
__version__ = "0.1.0"
