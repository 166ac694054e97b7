"""ComputeService: compute targets of trainer nodes, their autoscaling and node leases.

`manager.ComputeManager` keeps the targets in memory and runs the autoscaler
(`pool`). `leases` lends nodes to experiments. `local_provider` starts each
node as a TrainerService process on this host. `servicer` converts protos to
and from these transport-neutral types.
"""
