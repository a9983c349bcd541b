"""tm._shared_variables for asyncio servers: a start_server factory stands for its handler."""

from __future__ import annotations

from tm._shared_variables import shared_rebindings as _shared_rebindings
from tm_asyncio._managed import start_server_callback


def shared_rebindings(protocol_factory) -> list[str]:
    """What the code behind protocol_factory rebinds or changes in place that every connection
    shares (tm._shared_variables.shared_rebindings)."""
    return _shared_rebindings(protocol_factory, unwrap=start_server_callback)


__all__ = ["shared_rebindings"]
