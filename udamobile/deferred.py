"""Modules imported when first used, not when the module naming them is imported.

The stage declarations (`udamobile.training.stages`) are read by the config, the
flags and the table runner, none of which should wait seconds for
TensorFlow; their step functions use it only once a stage runs.

    tf, losses = deferred("tensorflow", "udamobile.training.losses")
"""
import importlib


class _Deferred:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self):
        return f"<deferred module {self._name}>"


def deferred(*names):
    """One stand-in per module name; each imports its module at its first attribute."""
    stand_ins = tuple(_Deferred(name) for name in names)
    return stand_ins if len(names) > 1 else stand_ins[0]
