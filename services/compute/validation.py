"""Validation of every ComputeService request field, in one place.

`validate_create` checks a new target against the rule table `TARGET_RULES`
and reports one field violation per invalid field. The other functions check
the single fields of the remaining methods. Page sizes and tokens are checked
by `automl.common.paging`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from automl.common.errors import FieldViolation, InvalidArgument, invalid_field
from automl.common.names import id_violation, parse_name
from services.compute.models import DEFAULT_IDLE_SECONDS, DEFAULT_PROVIDER, TARGET_COLLECTION, TargetSpec
from services.compute.provider import MAX_NODES_BY_PROVIDER
from services.compute.vm_sizes import find_vm_size, vm_size_names

TARGET_FIELD = "compute_target"
DEFAULT_ACQUIRE_WAIT_SECONDS = 10.0
MAX_ACQUIRE_WAIT_SECONDS = 60.0
DEFAULT_WAIT_SECONDS = 60.0
MAX_WAIT_SECONDS = 3600.0
MAX_HOLDER_LENGTH = 256


def _provider(spec: TargetSpec) -> str:
    return spec.provider or DEFAULT_PROVIDER


def _max_nodes_limit(spec: TargetSpec) -> int:
    return MAX_NODES_BY_PROVIDER.get(_provider(spec), 0)


@dataclass(frozen=True)
class Rule:
    """One check of a TargetSpec field.

    A field gets the violation of its first failing rule only. A rule runs only
    when every field in `requires` passed its own rules, so that `min_nodes <=
    max_nodes` is not reported on top of an invalid `max_nodes`.
    """

    field: str
    is_valid: Callable[[TargetSpec], bool]
    describe: Callable[[TargetSpec], str]
    requires: tuple[str, ...] = ()


TARGET_RULES: tuple[Rule, ...] = (
    Rule("vm_size", lambda s: bool(s.vm_size.strip()),
         lambda s: f"is required; use one of {', '.join(vm_size_names())}"),
    Rule("vm_size", lambda s: find_vm_size(s.vm_size) is not None,
         lambda s: f"'{s.vm_size}' is not a known VM size; use one of {', '.join(vm_size_names())}"),
    Rule("provider", lambda s: _provider(s) in MAX_NODES_BY_PROVIDER,
         lambda s: f"'{s.provider}' is not a known provider; use one of {', '.join(sorted(MAX_NODES_BY_PROVIDER))}"
                   " or leave it empty for local"),
    Rule("min_nodes", lambda s: s.min_nodes >= 0,
         lambda s: f"is {s.min_nodes}; use 0 or more"),
    Rule("max_nodes", lambda s: s.max_nodes >= 1,
         lambda s: f"is {s.max_nodes}; use at least 1"),
    Rule("max_nodes", lambda s: s.max_nodes <= _max_nodes_limit(s),
         lambda s: f"is {s.max_nodes}; provider '{_provider(s)}' allows at most {_max_nodes_limit(s)}",
         requires=("provider",)),
    Rule("min_nodes", lambda s: s.min_nodes <= s.max_nodes,
         lambda s: f"is {s.min_nodes}, more than max_nodes {s.max_nodes}; use at most {s.max_nodes}",
         requires=("max_nodes",)),
    Rule("idle_seconds_before_scaledown", lambda s: s.idle_seconds_before_scaledown >= 0,
         lambda s: f"is {s.idle_seconds_before_scaledown}; use 0 or more seconds (0 means {DEFAULT_IDLE_SECONDS})"),
    Rule("vm_priority", lambda s: s.vm_priority is not None,
         lambda s: "is not a known VM priority; use VM_PRIORITY_DEDICATED or VM_PRIORITY_LOW_PRIORITY"),
)


def target_violations(spec: TargetSpec) -> list[FieldViolation]:
    """Apply `TARGET_RULES` to `spec` and return at most one violation per field."""
    failed: dict[str, FieldViolation] = {}
    for rule in TARGET_RULES:
        if rule.field in failed or any(name in failed for name in rule.requires):
            continue
        if not rule.is_valid(spec):
            failed[rule.field] = FieldViolation(f"{TARGET_FIELD}.{rule.field}", rule.describe(spec))
    return list(failed.values())


def validate_create(target_id: str, spec: TargetSpec | None) -> TargetSpec:
    """Check a CreateComputeTarget request and return the spec with defaults filled in.

    Raises
    ------
    InvalidArgument
        With one violation per invalid field of the request.
    """
    violations = []
    id_problem = id_violation("compute_target_id", target_id)
    if id_problem:
        violations.append(id_problem)
    if spec is None:
        violations.append(FieldViolation(TARGET_FIELD, "is required; set vm_size and max_nodes at least"))
    else:
        violations.extend(target_violations(spec))
    if violations:
        raise InvalidArgument(violations)

    size = find_vm_size(spec.vm_size)
    return replace(
        spec,
        vm_size=size.name,
        provider=_provider(spec),
        idle_seconds_before_scaledown=spec.idle_seconds_before_scaledown or DEFAULT_IDLE_SECONDS,
    )


def parse_target_name(name: str, field: str = "name") -> str:
    """Return the ID of `computeTargets/{id}`, or raise InvalidArgument naming `field`."""
    return parse_name(name, TARGET_COLLECTION, field)


def parse_lease_name(name: str, field: str = "name") -> str:
    """Return the target ID of `computeTargets/{id}/leases/{lease}`, or raise InvalidArgument naming `field`."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != TARGET_COLLECTION or parts[2] != "leases" or not parts[1] or not parts[3]:
        raise invalid_field(field, f"'{name}' is not a lease name; use {TARGET_COLLECTION}/{{id}}/leases/{{lease}}"
                                   " as AcquireNode returned it")
    return parts[1]


def validate_holder(holder: str) -> str:
    """Return `holder` stripped, or raise InvalidArgument when it is empty or too long."""
    holder = holder.strip()
    if not holder:
        raise invalid_field("holder", "is required; name who leases the node, for example experiments/digits")
    if len(holder) > MAX_HOLDER_LENGTH:
        raise invalid_field("holder", f"has {len(holder)} characters; use at most {MAX_HOLDER_LENGTH}")
    return holder


def validate_seconds(field: str, seconds: float | None, default: float, maximum: float) -> float:
    """Return `seconds`, or `default` when None, checking 0 <= seconds <= maximum."""
    if seconds is None:
        return default
    if seconds < 0:
        raise invalid_field(field, f"is {seconds:g} s; use 0 to {maximum:g} s or leave it unset for {default:g} s")
    if seconds > maximum:
        raise invalid_field(field, f"is {seconds:g} s, more than the maximum {maximum:g} s; use at most {maximum:g} s")
    return seconds


def validate_min_node_count(count: int, max_nodes: int) -> int:
    """Check WaitComputeTarget's `min_node_count` against the target's `max_nodes`."""
    if count < 0:
        raise invalid_field("min_node_count", f"is {count}; use 0 to max_nodes ({max_nodes})")
    if count > max_nodes:
        raise invalid_field("min_node_count", f"is {count}, more than the target's max_nodes {max_nodes}; "
                                              f"use at most {max_nodes}")
    return count
