"""Evaluation: scoring a segmenter (`scoring`, `metrics`), opening a trained or
exported one (`model_adapters`), what is printed and drawn (`report`,
`figures`, the paper's tables), and the signals that need no target label."""
