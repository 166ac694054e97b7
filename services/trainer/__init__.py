"""TrainerService: runs iterations (validate, fit, store) on one compute node.

The gRPC process downloads data sets into a per-node cache and hands each
iteration to a worker process started from a forkserver, so a timeout or a
cancellation can kill the work without touching the server.
"""
