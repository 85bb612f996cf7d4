"""python evaluate.py: scores a segmenter with the paper's protocol (udamobile/commands/evaluate.py).

Kept so that a checkout runs without installing; `udamobile-evaluate` is the
installed program.
"""
from udamobile.commands import evaluate

if __name__ == "__main__":
    evaluate.run()
