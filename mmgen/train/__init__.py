"""Training entry points, one module per model (`mmgen train vq` → `mmgen.train.vq`); each has
`add_arguments(parser)` and `run(args) -> int` and runs unchanged under `accelerate launch`."""
