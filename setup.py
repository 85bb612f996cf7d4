"""Installs the udamobile library, its data pipelines and its export tools.

It installs one console program per task (see udamobile/commands/__init__.py);
in a checkout, `python train.py`, `python evaluate.py`, `python predict.py`,
`python -m export`, `python -m data_pipelines.check` and `python -m
udamobile.experiments` run the same programs.
"""
import re

from setuptools import find_packages, setup

# The one place the version is written; udamobile/provenance.py imports only the standard
# library, but reading it as text needs nothing installed.
with open("udamobile/provenance.py", encoding="utf-8") as provenance:
    VERSION = re.search(r'^VERSION = "([^"]+)"', provenance.read(), re.M).group(1)

setup(
    name="udamobile",
    version=VERSION,
    description=(
        "Unsupervised domain adaptation for mobile semantic segmentation "
        "(Toldo et al., IVC 2020) in TensorFlow 2 / Keras 3"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
    python_requires=">=3.10",
    packages=find_packages(include=["udamobile", "udamobile.*",
                                    "data_pipelines", "data_pipelines.*",
                                    "export", "export.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "numpy>=2,<3",
        "opencv-python-headless>=4.10,<6",
        "pillow>=10,<14",
        "absl-py>=2,<3",
        "ai-edge-litert>=2,<3",  # runs .tflite files: evaluate.py, the deployment example
        "tensorboard>=2.20,<3",  # tf.summary needs it; TF 2.21 no longer depends on it
    ],
    entry_points={
        "console_scripts": [
            "udamobile-train = udamobile.commands.train:run",
            "udamobile-evaluate = udamobile.commands.evaluate:run",
            "udamobile-predict = udamobile.commands.predict:run",
            "udamobile-table = udamobile.commands.table:run",
            "udamobile-export = export.__main__:run",
            "udamobile-check-data = data_pipelines.check:run",
        ],
    },
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.8,<4"],
    },
)
