"""Connections of one command: gRPC stubs of the services and the object store."""

from __future__ import annotations

from typing import Iterator

import grpc

from automl.cli.errors import CliError, ServiceCallError
from automl.common.config import S3Settings
from automl.common.storage import ObjectStore
from automl.v1 import compute_pb2_grpc, experiment_pb2_grpc

# Deadline of a unary call unless the command sets its own, in seconds.
DEFAULT_TIMEOUT = 60.0


class Stub:
    """A service stub whose failed unary calls raise ServiceCallError naming the service.

    Attribute access returns the RPC methods of the generated stub, so
    `stub.GetExperiment(request)` reads as with the generated class.
    """

    def __init__(self, stub, service: str, address: str):
        self._stub = stub
        self.service = service
        self.address = address

    def __getattr__(self, method: str):
        rpc = getattr(self._stub, method)

        def invoke(request, timeout: float = DEFAULT_TIMEOUT):
            try:
                return rpc(request, timeout=timeout)
            except grpc.RpcError as error:
                raise ServiceCallError(error, self.service, self.address) from None

        return invoke

    def stream(self, method: str, request) -> Iterator:
        """Start a server-streaming call and return the raw response iterator.

        Errors surface as grpc.RpcError while iterating, so that callers can
        tell a broken stream from a rejected request.
        """
        return getattr(self._stub, method)(request)


class Context:
    """Addresses and lazily opened connections of one command.

    Parameters
    ----------
    experiment_address, compute_address : str
        `host:port` of the ExperimentService and the ComputeService.
    """

    def __init__(self, experiment_address: str, compute_address: str):
        self.experiment_address = experiment_address
        self.compute_address = compute_address
        self._channels: list[grpc.Channel] = []
        self._experiments: Stub | None = None
        self._compute: Stub | None = None
        self._store: ObjectStore | None = None
        self.s3_settings = S3Settings.from_env()

    @property
    def experiments(self) -> Stub:
        """Stub of the ExperimentService."""
        if self._experiments is None:
            channel = self._open(self.experiment_address)
            self._experiments = Stub(experiment_pb2_grpc.ExperimentServiceStub(channel), "ExperimentService",
                                     self.experiment_address)
        return self._experiments

    @property
    def compute(self) -> Stub:
        """Stub of the ComputeService."""
        if self._compute is None:
            channel = self._open(self.compute_address)
            self._compute = Stub(compute_pb2_grpc.ComputeServiceStub(channel), "ComputeService", self.compute_address)
        return self._compute

    @property
    def store(self) -> ObjectStore:
        """The object store from `S3_ENDPOINT` and the other `S3_*` variables."""
        if self._store is None:
            self._store = ObjectStore(self.s3_settings)
        return self._store

    def _open(self, address: str) -> grpc.Channel:
        if not address:
            raise CliError("no service address given; set it with the address flag or its environment variable")
        channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def close(self) -> None:
        """Close every open channel."""
        for channel in self._channels:
            channel.close()
        self._channels.clear()


def resource_name(value: str, collection: str) -> str:
    """Return `{collection}/{id}` for an ID or for a name that already has the prefix."""
    prefix = f"{collection}/"
    return value if value.startswith(prefix) else prefix + value


def resource_id(name: str) -> str:
    """Return the last segment of a resource name."""
    return name.rsplit("/", 1)[-1]
