"""Load: concurrent experiments, watchers and reads against one stack on loopback.

One run starts the stack with free ports and an embedded S3 endpoint, creates
one compute target and uploads iris once. Then, at the same time:

1. `--clients` threads each submit one experiment (`--iterations` fast
   iterations, ensembles off) on the shared target;
2. `--watchers` threads stream WatchExperiment, spread over the experiments,
   and count the events they receive;
3. `--readers` threads call GetExperiment, ListExperiments and
   ListIterations in a loop and time each call.

It stops when every experiment has ended (or after `--limit` seconds). Then it
checks that each one succeeded with all its iterations and that every watcher
saw every iteration end. It writes those counts and the p50 and p99
latencies of the reads to the "## Load" section of docs/benchmarks.md. Everything is bounded: a fixed number
of experiments, threads and seconds, and only 127.0.0.1.
Usage: `python -m benchmarks.load [--clients 10] [--watchers 20] [--readers 4]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import grpc
import numpy as np

from automl.common.config import S3Settings
from automl.common.storage import ObjectStore
from automl.stack import Stack
from automl.v1 import experiment_pb2, pipeline_pb2
from benchmarks.markdown import replace_section
from tests.integration.helpers import ensure_target, experiment_stub, iris_frame, upload_frame

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Load"
TERMINAL = {experiment_pb2.EXPERIMENT_STATE_SUCCEEDED, experiment_pb2.EXPERIMENT_STATE_FAILED,
            experiment_pb2.EXPERIMENT_STATE_CANCELED}
ITERATION_ENDED = {experiment_pb2.ITERATION_STATE_SUCCEEDED, experiment_pb2.ITERATION_STATE_FAILED,
                   experiment_pb2.ITERATION_STATE_CANCELED, experiment_pb2.ITERATION_STATE_TIMED_OUT}


class Latencies:
    """Call latencies in milliseconds per method, shared by the reader threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)

    def timed(self, method: str, call):
        started = time.perf_counter()
        try:
            return call()
        except grpc.RpcError:
            with self._lock:
                self.errors[method] += 1
            return None
        finally:
            with self._lock:
                self.samples[method].append((time.perf_counter() - started) * 1000)


def submit(stub, experiment_id: str, uri: str, target: str, iterations: int) -> None:
    experiment = experiment_pb2.Experiment(
        dataset=pipeline_pb2.Dataset(uri=uri, label_column="species"), compute_target=target,
        task=pipeline_pb2.TASK_CLASSIFICATION, primary_metric="accuracy", iterations=iterations,
        max_concurrent_iterations=1, seed=0,
        allowed_models=["LogisticRegression", "KNN", "GaussianNaiveBayes", "DecisionTree"],
        enable_voting_ensemble=False, enable_stack_ensemble=False)
    stub.CreateExperiment(experiment_pb2.CreateExperimentRequest(experiment_id=experiment_id, experiment=experiment),
                          timeout=30)


def watch(stub, name: str, limit: float, ended_counts: list, position: int) -> None:
    """Stream an experiment's events to its end and record how many iterations ended."""
    ended = set()
    for response in stub.WatchExperiment(experiment_pb2.WatchExperimentRequest(name=name), timeout=limit):
        event = response.event
        if event.HasField("iteration") and event.iteration.state in ITERATION_ENDED:
            ended.add(event.iteration.index)
    ended_counts[position] = len(ended)


def read_loop(stub, names: list[str], latencies: Latencies, stop: threading.Event, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        name = names[rng.integers(len(names))]
        latencies.timed("GetExperiment", lambda: stub.GetExperiment(
            experiment_pb2.GetExperimentRequest(name=name), timeout=10))
        latencies.timed("ListExperiments", lambda: stub.ListExperiments(
            experiment_pb2.ListExperimentsRequest(page_size=50), timeout=10))
        latencies.timed("ListIterations", lambda: stub.ListIterations(
            experiment_pb2.ListIterationsRequest(parent=name, page_size=50), timeout=10))


def run(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="load-") as workdir:
        stack = Stack(Path(workdir), free_ports=True, s3_endpoint="")
        stack.start()
        try:
            return _run_on(stack, args)
        finally:
            stack.stop()


def _run_on(stack: Stack, args: argparse.Namespace) -> str:
    os.environ["S3_ENDPOINT"] = stack.env["S3_ENDPOINT"]
    store = ObjectStore(S3Settings.from_env())
    store.ensure_bucket()
    target = ensure_target(stack, "load-cluster", max_nodes=args.nodes)
    uri = upload_frame(store, "load/iris.csv", iris_frame())
    stub = experiment_stub(stack)
    names = [f"experiments/load-{i}" for i in range(args.clients)]

    started = time.perf_counter()
    # Every client, watcher and reader has its own channel, as separate client processes would.
    submitters = [threading.Thread(target=submit, args=(experiment_stub(stack), name.split("/")[1], uri, target,
                                                        args.iterations)) for name in names]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join()

    ended_counts = [-1] * args.watchers
    watchers = [threading.Thread(target=watch, args=(experiment_stub(stack), names[i % len(names)], args.limit,
                                                     ended_counts, i), daemon=True) for i in range(args.watchers)]
    latencies, stop = Latencies(), threading.Event()
    readers = [threading.Thread(target=read_loop, args=(experiment_stub(stack), names, latencies, stop, i),
                                daemon=True) for i in range(args.readers)]
    for thread in watchers + readers:
        thread.start()

    deadline = time.monotonic() + args.limit
    while time.monotonic() < deadline:
        states = [stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name), timeout=10).state
                  for name in names]
        if all(state in TERMINAL for state in states):
            break
        time.sleep(1)
    stop.set()
    for thread in watchers + readers:
        thread.join(timeout=30)
    seconds = time.perf_counter() - started
    return report(stub, names, args, latencies, ended_counts, seconds)


def report(stub, names: list[str], args: argparse.Namespace, latencies: Latencies, ended_counts: list,
           seconds: float) -> str:
    experiments = [stub.GetExperiment(experiment_pb2.GetExperimentRequest(name=name), timeout=10) for name in names]
    complete = sum(1 for e in experiments if e.state == experiment_pb2.EXPERIMENT_STATE_SUCCEEDED
                   and e.iteration_counts.get("SUCCEEDED", 0) == args.iterations)
    watched = sum(1 for count in ended_counts if count == args.iterations)
    command = (f"python -m benchmarks.load --clients {args.clients} --watchers {args.watchers} "
               f"--readers {args.readers} --iterations {args.iterations} --nodes {args.nodes}")
    lines = [SECTION, "",
             f"Command: `{command}` (2 cores, loopback only, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"1-minute load average {os.getloadavg()[0]:.1f} at the end). {args.clients} clients each submitted "
             f"one iris experiment of {args.iterations} iterations (fast scikit-learn estimators, no ensembles) "
             f"to one {args.nodes}-node compute target at the same moment. Meanwhile {args.watchers} watchers "
             f"streamed WatchExperiment and {args.readers} reader threads called Get/List in a loop until every "
             f"experiment ended.", "",
             f"- Experiments that succeeded with all {args.iterations} iterations: {complete} of {len(names)}, "
             f"in {seconds:.0f} s.",
             f"- Watchers that saw every iteration end: {watched} of {len(ended_counts)}.", "",
             "| call | calls | errors | p50 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for method in ("GetExperiment", "ListExperiments", "ListIterations"):
        samples = np.array(latencies.samples[method] or [np.nan])
        lines.append(f"| {method} | {len(latencies.samples[method])} | {latencies.errors[method]} | "
                     f"{np.percentile(samples, 50):.1f} | {np.percentile(samples, 99):.1f} | {np.max(samples):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Concurrent experiments, watchers and Get/List reads on loopback.")
    parser.add_argument("--clients", type=int, default=10, help="experiments submitted at once (default 10)")
    parser.add_argument("--watchers", type=int, default=20, help="WatchExperiment streams (default 20)")
    parser.add_argument("--readers", type=int, default=4, help="threads calling Get/List in a loop (default 4)")
    parser.add_argument("--iterations", type=int, default=3, help="iterations per experiment (default 3)")
    parser.add_argument("--nodes", type=int, default=2, help="max nodes of the shared compute target (default 2)")
    parser.add_argument("--limit", type=float, default=900, help="seconds before the run gives up (default 900)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="Markdown file whose load section is written (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    for name in ("clients", "watchers", "readers", "iterations", "nodes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    text = run(args)
    print(text)
    replace_section(args.output, SECTION, text)


if __name__ == "__main__":
    main()
