"""Spatio-temporal blocks, one file per paper family, built by name through :func:`create`.

Importing this package imports every module of it (a ``pkgutil`` walk, so a new ``<family>.py`` needs no
list to be added to), and each module registers its blocks with :func:`register_block`. Modules whose
name starts with ``_`` are shared helpers and are imported by the modules that use them.
"""

import importlib as _importlib
import pkgutil as _pkgutil

from .registry import (
    BlockSpec,
    create,
    get_block_spec,
    is_registered_block,
    list_blocks,
    register_block,
    registered_blocks,
)


def block_modules() -> list[str]:
    """Qualified names of the block family modules (every module of this package but the private
    helpers, the registry and the ``kernels`` subpackage of fused ops), in name order."""
    return [f"{__name__}.{info.name}" for info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name)
            if not info.name.startswith("_") and info.name != "registry" and not info.ispkg]


for _module in block_modules():
    _importlib.import_module(_module)

__all__ = [
    "BlockSpec", "block_modules", "create", "get_block_spec", "is_registered_block", "list_blocks",
    "register_block", "registered_blocks",
]
