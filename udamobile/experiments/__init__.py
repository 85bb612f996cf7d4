"""The experiments: the methods (the rows of the paper's tables, each a list of
stages), the presets, the plan checked before a method runs, the runner of a
method's stages, and the tables (`python -m udamobile.experiments`)."""
