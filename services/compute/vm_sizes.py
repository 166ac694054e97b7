"""VM sizes that compute targets accept.

Names follow Azure's VM sizes, so targets written for Azure Machine Learning
read the same here. The local provider passes the cores and memory of the
size to each trainer node as limits (`--cores`, `--memory-mb`): iterations
use that many cores, and a worker over the memory is stopped. The provider
does not reserve them on the host.

=================  =====  ==========
Name               Cores  Memory MiB
=================  =====  ==========
STANDARD_D1_V2         1        3584
STANDARD_D2_V2         2        7168
STANDARD_DS2_V2        2        7168
STANDARD_D11_V2        2       14336
STANDARD_D3_V2         4       14336
STANDARD_DS3_V2        4       14336
STANDARD_D4_V2         8       28672
STANDARD_DS4_V2        8       28672
=================  =====  ==========
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VmSize:
    """One VM size: name, cores and memory in MiB of each node."""

    name: str
    cores: int
    memory_mb: int


# Smallest first: by cores, then memory, then name.
VM_SIZES: tuple[VmSize, ...] = (
    VmSize("STANDARD_D1_V2", 1, 3584),
    VmSize("STANDARD_D2_V2", 2, 7168),
    VmSize("STANDARD_DS2_V2", 2, 7168),
    VmSize("STANDARD_D11_V2", 2, 14336),
    VmSize("STANDARD_D3_V2", 4, 14336),
    VmSize("STANDARD_DS3_V2", 4, 14336),
    VmSize("STANDARD_D4_V2", 8, 28672),
    VmSize("STANDARD_DS4_V2", 8, 28672),
)

_BY_NAME = {size.name: size for size in VM_SIZES}


def find_vm_size(name: str) -> VmSize | None:
    """Return the size called `name`, ignoring case (`Standard_DS2_v2` works), or None."""
    return _BY_NAME.get(name.strip().upper())


def vm_size_names() -> list[str]:
    """Return every size name, smallest first."""
    return [size.name for size in VM_SIZES]
