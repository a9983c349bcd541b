"""tm_twisted: the Twisted reactor of tm-reactor, selected with ``twistd --reactor=tm``.

Importing this package is cheap; the C++ engine loads with the reactor module, on first use of
TMReactor or install().
"""

__all__ = ["TMReactor", "install"]


def install(workers: int | None = None):
    """Installs the tm reactor as Twisted's global reactor and returns it."""
    from tm_twisted._reactor import install as _install

    return _install(workers)


def __getattr__(name: str):
    if name == "TMReactor":
        from tm_twisted._reactor import TMReactor

        return TMReactor
    raise AttributeError(f"module 'tm_twisted' has no attribute {name!r}")
