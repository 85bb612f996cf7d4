"""Training: the stages (`stages/`, one declaration each), what a stage's step
updates (`state`, `stages.updates`), the data it reads (`inputs`), its losses,
the loop (`trainer`), and what keeps a long run safe: checkpoints, resumption
(`restore`), distribution, summaries and self-training's pseudo-labels."""
