"""python train.py: trains a method of the paper's tables (udamobile/commands/train.py).

Kept so that a checkout runs without installing; `udamobile-train` is the
installed program.
"""
from udamobile.commands import train

if __name__ == "__main__":
    train.run()
