"""python -m udamobile.predict: runs udamobile-predict (udamobile/commands/predict.py).

Only as a program: the package exports a function `udamobile.predict` (the
library's API, udamobile/inference.py), which importing a module of the same
name would shadow.
"""
if __name__ == "__main__":
    from udamobile.commands import predict

    predict.run()
else:
    raise ImportError(
        "udamobile.predict is the API function (udamobile/inference.py's predict_path); "
        "the program's module is udamobile.commands.predict, which `python -m "
        "udamobile.predict` runs")
