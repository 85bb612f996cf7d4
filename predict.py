"""python predict.py: segments your own images or video (udamobile/commands/predict.py).

Kept so that a checkout runs without installing; `udamobile-predict` is the
installed program.
"""
from udamobile.commands import predict

if __name__ == "__main__":
    predict.run()
