"""ExperimentService: experiments, pipeline search, scheduling on compute targets, event streams."""
