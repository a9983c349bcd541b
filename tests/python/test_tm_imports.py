"""An import inside a transaction against another transaction that holds the inevitable token
and imports the same module (tm/_imports.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from differential_helpers import child_environment, default_signals

# Thread A imports `slow`: under the module's lock, a finder waits (up to a second) until thread
# B holds the inevitable token; then importlib reads the module's file, which needs the token.
# B takes the token, then imports `slow`. Had A taken the module's lock before the token, A would
# wait for B's token and B for A's lock.
PROGRAM = textwrap.dedent(
    """
    import importlib, pathlib, sys, tempfile, threading
    import tm

    started, b_inevitable = threading.Event(), threading.Event()


    class WaitingFinder:
        def find_spec(self, name, path, target=None):
            if name == "slow":
                started.set()
                b_inevitable.wait(1.0)
            return None  # the path finder after it finds the file


    folder = pathlib.Path(tempfile.mkdtemp())
    (folder / "slow.py").write_text("DATA = 1\\n")
    sys.path.insert(0, str(folder))
    sys.meta_path.insert(0, WaitingFinder())
    done = []

    def a():
        with tm.atomic():  # irrevocable, as a reactor's callback
            importlib.import_module("slow")
        done.append("a")

    def b():
        started.wait()
        with tm.atomic():
            tm.inevitable()
            b_inevitable.set()
            importlib.import_module("slow")
        done.append("b")

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sorted(done), sys.modules["slow"].DATA)
    """
)


def test_an_import_takes_the_inevitable_token_before_the_module_lock():
    child = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env=child_environment("1"),
        preexec_fn=default_signals,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (child.returncode, child.stdout, child.stderr) == (0, "['a', 'b'] 1\n", "")
