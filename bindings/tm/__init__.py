"""tm: transactional memory for Python programs, and the engine under tm-reactor.

The extension ``tm._core`` holds the C++ engine; this package is its Python face.
"""

from tm._core import build_info

__all__ = ["build_info"]
