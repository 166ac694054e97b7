"""AutoML Services: the shared package of all services and clients.

`automl.v1` contains the generated gRPC stubs, `automl.common` the code every service
shares (server bootstrap, logging, errors, object storage) and `automl.cli` the
command-line client.
"""
