"""tm_asyncio: the asyncio event loop of tm-reactor."""
