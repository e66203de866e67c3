"""Pure pandas/numpy rules of the pipeline. Nothing in this package imports dagster."""
