"""gRPC clients of the services the orchestrator calls."""

from __future__ import annotations

import threading

import grpc

from automl.v1 import compute_pb2_grpc, explainer_pb2_grpc, trainer_pb2_grpc

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    # gRPC's default pause between reconnects grows to 120 s. A restarted
    # compute service is found again within 5 s instead.
    ("grpc.max_reconnect_backoff_ms", 5000),
]


class Clients:
    """Stubs of the ComputeService, the ExplainerService and any trainer node, with cached channels."""

    def __init__(self, compute_address: str, explainer_address: str):
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self.compute = compute_pb2_grpc.ComputeServiceStub(self._channel(compute_address))
        self.explainer = explainer_pb2_grpc.ExplainerServiceStub(self._channel(explainer_address))

    def trainer(self, address: str) -> trainer_pb2_grpc.TrainerServiceStub:
        """Return a stub for the trainer node at `address`."""
        return trainer_pb2_grpc.TrainerServiceStub(self._channel(address))

    def _channel(self, address: str) -> grpc.Channel:
        with self._lock:
            if address not in self._channels:
                self._channels[address] = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            return self._channels[address]

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()
