"""The `automl` command-line client of the ExperimentService and ComputeService."""
