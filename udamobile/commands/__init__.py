"""The programs of the package: flags and a `main`, over the library.

Each is installed as a console entry point (setup.py) and kept as the
script or module a checkout runs:

    udamobile-train        python train.py                    commands/train.py
    udamobile-evaluate     python evaluate.py                 commands/evaluate.py
    udamobile-predict      python predict.py                  commands/predict.py
                           (or python -m udamobile.predict)
    udamobile-table        python -m udamobile.experiments    commands/table.py
    udamobile-export       python -m export                   export/__main__.py
    udamobile-check-data   python -m data_pipelines.check     data_pipelines/check.py

They start and end the same way (`data_pipelines.cli`): quiet TensorFlow,
one line per user error, exit status 2 for a bad flag and 1 for the rest.
"""
