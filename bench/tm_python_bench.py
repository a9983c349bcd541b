"""What the tm Python API costs, measured from Python, beside plain Python, and how a CPU-bound
TransactionQueue scales from 1 to 2 workers beside plain threads. Never a pass/fail test.

    python bench/tm_python_bench.py                       # on this interpreter
    python bench/tm_python_bench.py --python .venv-gil/bin/python --python .venv-ft/bin/python
    python bench/tm_python_bench.py --python 'PY=PYTHONPATH' ...   # a PYTHONPATH for that one

Part 1 (one thread, ns per operation, best of --repeat runs of timeit): a managed read
(``Var.get()``, ``Dict[k]``, a ``tm.Object`` attribute, ``x in`` a ``tm.Set``, iterating a
``tm.List`` of 16) and a managed write (one a ``tm.Set``'s add and discard), each outside any
transaction (the operation is a small transaction of its own) and inside one restartable
transaction (``ops`` per transaction, the empty transaction subtracted), beside the same
operation on a plain object, dict or attribute; and an empty transaction (``tm.run_atomic``, a
``@tm.atomic`` function, ``with tm.atomic()``) beside a plain call or ``with`` block.

Part 2 (CPU-bound work): ``--items`` items, each pure-Python work of ``--work`` loop iterations
that touches no shared state, then one ``tm.Counter.add(1)``; run as a TransactionQueue at 1 and
2 workers, as 2 plain ``threading.Thread`` (a ``threading.Lock``-guarded int instead of the
counter) and on a single thread. The configurations are interleaved round by round (``--rounds``)
so that they share the machine's load; the median and the best round of each are shown. Ratios are
single-thread time over each configuration's time, and TransactionQueue 1 worker over 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
import timeit

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Published figures (docs/DESIGN.md section 8), printed so that ours are read beside them.
PYPY_STM = """\
PyPy-STM's published scaling (docs/DESIGN.md section 8):
  PyPy-STM 2.3 (2014): single-thread slowdown 1.2x to 3x against regular PyPy; mandelbrot 27.5 s
    at 1 thread, 8.7 s at 4 threads (3.2x); richards did not scale past 3 threads; btree did not
    scale at all.
  PyPy-STM 2.5.1 (2015): 25-40% single-thread slowdown in the best case, "very good scaling up to
    4 threads"; the engine could not go beyond 4 cores.
  Tornado on PyPy-STM (2014), CPU-bound primes server: 9.3, 16.4, 20.4, 24.2 requests/s at 1 to 4
    threads (2.6x at 4 threads).
  DLS 2014 paper: 2.7x on average from 1 to 4 threads on embarrassingly parallel benchmarks.
  Free-threaded CPython 3.13.5 on a 2-core machine like this one: a pure-Python loop runs 2.03x
    faster on 2 threads than on 1 (the ideal here is 2x); a bare C++-driven prototype calling a
    1 ms callable reached 2.15x."""


# ---- part 1: per-operation costs -------------------------------------------------------------


class _Plain:
    pass


def _per_op(stmt, setup_globals, number, repeat):
    """Best ns per execution of stmt."""
    t = timeit.Timer(stmt, globals=setup_globals)
    return min(t.repeat(repeat=repeat, number=number)) / number * 1e9


def op_costs(number, repeat, ops):
    import tm

    class Obj(tm.Object):
        pass

    v = tm.Var(1)
    d = tm.Dict(k=1)
    o = Obj()
    o.attr = 1
    box = _Plain()
    box.value = 1
    pd = {"k": 1}
    po = _Plain()
    po.attr = 1
    s, ps = tm.Set(range(16)), set(range(16))
    lst, pl = tm.List(range(16)), list(range(16))

    def noop():
        return None

    @tm.atomic
    def decorated():
        return None

    class _Null:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    null = _Null()
    g = dict(
        tm=tm,
        v=v,
        d=d,
        o=o,
        box=box,
        pd=pd,
        po=po,
        s=s,
        ps=ps,
        lst=lst,
        pl=pl,
        noop=noop,
        decorated=decorated,
        null=null,
    )

    # Inside one transaction: `ops` operations per run_atomic, minus the empty transaction.
    def in_tx(body_src):
        src = f"def _body():\n    for _ in _r:\n        {body_src}\n"
        ns = dict(g, _r=range(ops))
        exec(src, ns)
        body = ns["_body"]
        total = _per_op(
            "run_atomic(body)",
            {"run_atomic": tm.run_atomic, "body": body},
            max(1, number // ops),
            repeat,
        )
        plain = _per_op("body()", {"body": body}, max(1, number // ops), repeat)
        return total, plain

    empty_tx = _per_op("run_atomic(noop)", dict(g, run_atomic=tm.run_atomic), number, repeat)

    rows = []

    def row(name, managed_stmt, plain_stmt, in_tx_stmt=None, plain_in_tx_stmt=None):
        managed = _per_op(managed_stmt, g, number, repeat)
        plain = _per_op(plain_stmt, g, number, repeat)
        r = {"op": name, "managed_ns": managed, "plain_ns": plain}
        if in_tx_stmt is not None:
            total, _ = in_tx(in_tx_stmt)
            _, plain_total = in_tx(plain_in_tx_stmt)
            r["in_tx_ns"] = max(total - empty_tx, 0.0) / ops
            r["plain_loop_ns"] = plain_total / ops
        rows.append(r)

    row("read  Var.get()        | box.value", "v.get()", "box.value", "v.get()", "box.value")
    row("read  Dict[k]          | dict[k]", "d['k']", "pd['k']", "d['k']", "pd['k']")
    row("read  Object attribute | plain attribute", "o.attr", "po.attr", "o.attr", "po.attr")
    row(
        "write Var.set(x)       | box.value = x",
        "v.set(2)",
        "box.value = 2",
        "v.set(2)",
        "box.value = 2",
    )
    row(
        "write Dict[k] = x      | dict[k] = x",
        "d['k'] = 2",
        "pd['k'] = 2",
        "d['k'] = 2",
        "pd['k'] = 2",
    )
    row(
        "write Object attribute | plain attribute",
        "o.attr = 2",
        "po.attr = 2",
        "o.attr = 2",
        "po.attr = 2",
    )
    row("read  x in Set         | x in set", "3 in s", "3 in ps", "3 in s", "3 in ps")
    row(
        "read  iterate List(16) | list(16)",
        "for x in lst: pass",
        "for x in pl: pass",
        "for x in lst: pass",
        "for x in pl: pass",
    )
    row(
        "write Set add+discard  | set add+discard",
        "s.add(99); s.discard(99)",
        "ps.add(99); ps.discard(99)",
        "s.add(99); s.discard(99)",
        "ps.add(99); ps.discard(99)",
    )
    rows.append(
        {
            "op": "empty tm.run_atomic(f)   | f()",
            "managed_ns": empty_tx,
            "plain_ns": _per_op("noop()", g, number, repeat),
        }
    )
    rows.append(
        {
            "op": "empty @tm.atomic f()     | f()",
            "managed_ns": _per_op("decorated()", g, number, repeat),
            "plain_ns": _per_op("noop()", g, number, repeat),
        }
    )
    rows.append(
        {
            "op": "empty with tm.atomic()   | with ctx",
            "managed_ns": _per_op("with tm.atomic(): pass", g, number, repeat),
            "plain_ns": _per_op("with null: pass", g, number, repeat),
        }
    )
    return rows


# ---- part 2: CPU-bound TransactionQueue ------------------------------------------------------


def work(n):
    """Pure-Python CPU work touching no shared state."""
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x


def run_tq(workers, items, n):
    import tm

    counter = tm.Counter()

    def item():
        work(n)
        counter.add(1)

    q = tm.TransactionQueue()
    for _ in range(items):
        q.add(item)
    t0 = time.perf_counter()
    q.run(workers=workers)
    dt = time.perf_counter() - t0
    assert counter.get() == items, (counter.get(), items)
    return dt


def run_threads(threads, items, n):
    lock = threading.Lock()
    done = [0]

    def loop(k):
        for _ in range(k):
            work(n)
            with lock:
                done[0] += 1

    share = [items // threads + (1 if i < items % threads else 0) for i in range(threads)]
    ts = [threading.Thread(target=loop, args=(k,)) for k in share]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    assert done[0] == items
    return dt


def run_single(items, n):
    done = 0
    t0 = time.perf_counter()
    for _ in range(items):
        work(n)
        done += 1
    dt = time.perf_counter() - t0
    assert done == items
    return dt


def scaling(items, n, rounds):
    configs = {
        "single thread": lambda: run_single(items, n),
        "threading.Thread x2": lambda: run_threads(2, items, n),
        "TransactionQueue 1 worker": lambda: run_tq(1, items, n),
        "TransactionQueue 2 workers": lambda: run_tq(2, items, n),
    }
    for fn in configs.values():  # warm up (imports, thread pools, caches)
        fn()
    times = {k: [] for k in configs}
    for _ in range(rounds):
        for k, fn in configs.items():
            times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds": med, "all_seconds": times, "per_item_us": med["single thread"] / items * 1e6}


# ---- driver ----------------------------------------------------------------------------------


def measure(args):
    import tm

    info = tm.build_info()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "gil_enabled": gil,
        "tm_version": info.get("version"),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "ops": op_costs(args.number, args.repeat, args.ops),
        "scaling": scaling(args.items, args.work, args.rounds),
        "load_after": os.getloadavg()[0],
    }


def show(res):
    kind = "free-threaded" if res["free_threaded"] else "GIL"
    print(
        f"== CPython {res['python']} ({kind}, GIL {'on' if res['gil_enabled'] else 'off'}), "
        f"{res['executable']}, tm {res['tm_version']}, {res['cpus']} CPUs, "
        f"load {res['load_before']:.1f} -> {res['load_after']:.1f}"
    )
    print(
        f"{'operation: managed | plain':44} {'managed':>9} {'plain':>8} {'x':>6}"
        f" {'in tx':>8} {'plain':>8} {'x':>6}"
    )
    for r in res["ops"]:
        line = (
            f"{r['op']:44} {r['managed_ns']:8.0f}n {r['plain_ns']:7.0f}n "
            f"{r['managed_ns'] / r['plain_ns']:6.1f}"
        )
        if "in_tx_ns" in r:
            line += (
                f" {r['in_tx_ns']:7.0f}n {r['plain_loop_ns']:7.0f}n "
                f"{r['in_tx_ns'] / r['plain_loop_ns']:6.1f}"
            )
        print(line)
    print(
        "  (ns per operation, best of runs; 'in tx': inside one restartable transaction, per op,"
        " the empty transaction subtracted; 'plain' beside it: the same loop on plain objects)"
    )
    s = res["scaling"]
    sec = s["seconds"]
    best = {k: min(v) for k, v in s["all_seconds"].items()}
    print(
        f"CPU-bound: {res.get('items')} items x {s['per_item_us']:.0f} us of pure-Python work, "
        f"one tm.Counter.add per item ({len(s['all_seconds']['single thread'])} rounds):"
    )
    print(f"  {'':28} {'median':>8}   {'vs single':>9}   {'best':>8}   {'vs single':>9}")
    for k, v in sec.items():
        print(
            f"  {k:28} {v:7.3f}s   {sec['single thread'] / v:8.2f}x   {best[k]:7.3f}s   "
            f"{best['single thread'] / best[k]:8.2f}x"
        )
    for label, t in (("median", sec), ("best", best)):
        single = t["single thread"]
        tq1, tq2 = t["TransactionQueue 1 worker"], t["TransactionQueue 2 workers"]
        th2 = t["threading.Thread x2"]
        print(
            f"  2-vs-1 ratios ({label}): TransactionQueue 2 workers vs 1 worker "
            f"{tq1 / tq2:.2f}x; threading.Thread x2 vs single thread {single / th2:.2f}x; "
            f"TransactionQueue 1 worker vs single thread {100 * (tq1 / single - 1):+.1f}%"
        )


def child(py_spec, args):
    py, _, pythonpath = py_spec.partition("=")
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [
        py,
        str(pathlib.Path(__file__).resolve()),
        "--json",
        "--number",
        str(args.number),
        "--repeat",
        str(args.repeat),
        "--ops",
        str(args.ops),
        "--items",
        str(args.items),
        "--work",
        str(args.work),
        "--rounds",
        str(args.rounds),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{py} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        help="run on this interpreter (PY or PY=PYTHONPATH); repeatable",
    )
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON")
    parser.add_argument("--number", type=int, default=200_000, help="timeit loop count")
    parser.add_argument("--repeat", type=int, default=5, help="timeit runs (best taken)")
    parser.add_argument("--ops", type=int, default=1000, help="operations per transaction")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--work", type=int, default=20_000, help="loop iterations per item")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.python:
        results = [child(p, args) for p in args.python]
    else:
        results = [measure(args)]
    for r in results:
        r["items"] = args.items
    if args.json:
        print(json.dumps(results if args.python else results[0]))
        return 0
    for r in results:
        show(r)
        print()
    print(PYPY_STM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
