"""`automl compute ...`: create, inspect, wait for and delete compute targets."""

from __future__ import annotations

import argparse
import sys

from google.protobuf import duration_pb2

from automl.cli import render
from automl.cli.client import Context, resource_id, resource_name
from automl.v1 import compute_pb2

PRIORITIES = {
    "dedicated": compute_pb2.VM_PRIORITY_DEDICATED,
    "low_priority": compute_pb2.VM_PRIORITY_LOW_PRIORITY,
}
READY_NODE_STATES = (compute_pb2.NODE_STATE_IDLE, compute_pb2.NODE_STATE_RUNNING)


def register(subparsers, common: argparse.ArgumentParser) -> None:
    """Add the `compute` command and its subcommands."""
    compute = subparsers.add_parser("compute", help="manage compute targets (clusters of trainer nodes)")
    commands = compute.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = commands.add_parser("create", parents=[common], help="create a compute target")
    create.add_argument("name", metavar="NAME", help="ID of the new target, e.g. automl-cluster")
    create.add_argument("--vm-size", required=True, metavar="SIZE", help="VM size of each node; see `automl compute sizes`")
    create.add_argument("--min-nodes", type=int, default=0, metavar="N", help="nodes kept running even when idle (default 0)")
    create.add_argument("--max-nodes", type=int, required=True, metavar="N", help="upper bound on nodes")
    create.add_argument("--idle-seconds", type=int, default=0, metavar="S",
                        help="seconds an idle node above --min-nodes lives before it stops (service default 120)")
    create.add_argument("--priority", choices=sorted(PRIORITIES), default="dedicated", help="VM priority")
    create.add_argument("--provider", default="", metavar="NAME", help="node provider (service default: local)")
    create.set_defaults(func=create_target)

    show = commands.add_parser("show", parents=[common], help="show a target with its nodes")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=show_target)

    listing = commands.add_parser("list", parents=[common], help="list compute targets")
    listing.set_defaults(func=list_targets)

    delete = commands.add_parser("delete", parents=[common], help="delete a compute target")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(func=delete_target)

    wait = commands.add_parser("wait", parents=[common], help="wait until a target has ready nodes")
    wait.add_argument("name", metavar="NAME")
    wait.add_argument("--nodes", type=int, default=1, metavar="N", help="ready (idle or running) nodes to wait for (default 1)")
    wait.add_argument("--timeout", type=float, default=60.0, metavar="S", help="maximum wait in seconds (default 60)")
    wait.set_defaults(func=wait_target)

    sizes = commands.add_parser("sizes", parents=[common], help="list the VM sizes with cores and memory")
    sizes.set_defaults(func=list_sizes)


def create_target(args, ctx: Context) -> int:
    """Create a compute target and print it."""
    target = compute_pb2.ComputeTarget(
        vm_size=args.vm_size,
        min_nodes=args.min_nodes,
        max_nodes=args.max_nodes,
        idle_seconds_before_scaledown=args.idle_seconds,
        vm_priority=PRIORITIES[args.priority],
        provider=args.provider,
    )
    request = compute_pb2.CreateComputeTargetRequest(compute_target_id=resource_id(args.name), compute_target=target)
    created = ctx.compute.CreateComputeTarget(request)
    print(f"Created {created.name} ({provisioning_state(created)}).")
    print(f"Check its nodes with: automl compute show {resource_id(created.name)}")
    return 0


def show_target(args, ctx: Context) -> int:
    """Print a compute target's settings, node counts and nodes."""
    name = resource_name(args.name, "computeTargets")
    target = ctx.compute.GetComputeTarget(compute_pb2.GetComputeTargetRequest(name=name))
    print(target_details(target))
    return 0


def list_targets(args, ctx: Context) -> int:
    """Print every compute target as a table."""
    targets = []
    page_token = ""
    while True:
        response = ctx.compute.ListComputeTargets(
            compute_pb2.ListComputeTargetsRequest(page_size=1000, page_token=page_token))
        targets.extend(response.compute_targets)
        page_token = response.next_page_token
        if not page_token:
            break
    if not targets:
        print("No compute targets. Create one with: automl compute create NAME --vm-size SIZE --max-nodes N")
        return 0
    rows = [
        (resource_id(t.name), provisioning_state(t), t.vm_size, t.min_nodes, t.max_nodes, t.current_node_count,
         ready_nodes(t))
        for t in targets
    ]
    print(render.format_table(("NAME", "STATE", "VM SIZE", "MIN", "MAX", "NODES", "READY"), rows,
                              right=(3, 4, 5, 6)))
    return 0


def delete_target(args, ctx: Context) -> int:
    """Delete a compute target."""
    name = resource_name(args.name, "computeTargets")
    ctx.compute.DeleteComputeTarget(compute_pb2.DeleteComputeTargetRequest(name=name))
    print(f"Deleted {name}.")
    return 0


def wait_target(args, ctx: Context) -> int:
    """Wait until a target has `--nodes` ready nodes; exit 1 when the timeout passes first."""
    name = resource_name(args.name, "computeTargets")
    timeout = duration_pb2.Duration()
    timeout.FromNanoseconds(int(args.timeout * 1e9))
    request = compute_pb2.WaitComputeTargetRequest(name=name, min_node_count=args.nodes, timeout=timeout)
    # The service returns when the timeout passes, so the deadline only guards against a hung call.
    target = ctx.compute.WaitComputeTarget(request, timeout=args.timeout + 30)
    print(target_details(target))
    ready = ready_nodes(target)
    if ready < args.nodes:
        print(f"error: {name} has {ready} ready nodes of {args.nodes} after {args.timeout:g} s", file=sys.stderr)
        return 1
    return 0


def list_sizes(args, ctx: Context) -> int:
    """Print the VM sizes the ComputeService accepts."""
    response = ctx.compute.ListVmSizes(compute_pb2.ListVmSizesRequest())
    rows = [(size.name, size.cores, size.memory_mb) for size in response.vm_sizes]
    print(render.format_table(("NAME", "CORES", "MEMORY (MiB)"), rows, right=(1, 2)))
    return 0


def provisioning_state(target: compute_pb2.ComputeTarget) -> str:
    """Return the short name of a target's provisioning state."""
    return render.enum_name(compute_pb2.ProvisioningState, target.provisioning_state)


def ready_nodes(target: compute_pb2.ComputeTarget) -> int:
    """Count a target's nodes that are idle or running."""
    return sum(1 for node in target.nodes if node.state in READY_NODE_STATES)


def target_details(target: compute_pb2.ComputeTarget) -> str:
    """Format a compute target: settings, node counts and a table of its nodes."""
    pairs = [
        ("Name", target.name),
        ("State", provisioning_state(target)),
        ("VM size", f"{target.vm_size} ({target.cores_per_node} cores, {target.memory_mb_per_node} MiB per node)"),
        ("Priority", render.enum_name(compute_pb2.VmPriority, target.vm_priority)),
        ("Provider", target.provider or "-"),
        ("Nodes", f"{target.current_node_count} now, {ready_nodes(target)} ready, "
                  f"{target.target_node_count} targeted (min {target.min_nodes}, max {target.max_nodes})"),
        ("Idle scale-down", f"{target.idle_seconds_before_scaledown} s"),
        ("Queued leases", target.queued_lease_requests),
        ("Created", render.format_time(target.create_time)),
    ]
    if target.provisioning_error:
        pairs.append(("Error", target.provisioning_error))
    text = render.format_fields(pairs)
    if target.nodes:
        rows = [
            (resource_id(node.name), render.enum_name(compute_pb2.NodeState, node.state), node.address,
             node.holder or "-", render.format_time(node.state_time))
            for node in target.nodes
        ]
        text += "\n\n" + render.format_table(("NODE", "STATE", "ADDRESS", "HOLDER", "SINCE"), rows)
    return text

