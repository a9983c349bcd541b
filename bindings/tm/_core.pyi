from typing import TypedDict

class BuildInfo(TypedDict):
    version: str
    compiler: str
    boost: str
    pybind11: str
    python: str
    free_threaded: bool
    gil_enabled: bool

def build_info() -> BuildInfo: ...
