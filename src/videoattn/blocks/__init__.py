"""Spatio-temporal blocks, one file per paper family, built by name through :func:`create`.

Importing this package registers every block family.
"""

from . import (  # noqa: F401  (registers blocks)
    baselines,
    bat,
    composite,
    conv,
    factorised,
    gsm,
    gta,
    identity,
    nl_variants,
    non_local,
    rnl,
    rsa,
    shift,
)
from .registry import (
    BlockSpec,
    create,
    get_block_spec,
    is_registered_block,
    list_blocks,
    register_block,
    registered_blocks,
)

__all__ = [
    "BlockSpec", "create", "get_block_spec", "is_registered_block", "list_blocks", "register_block",
    "registered_blocks",
]
