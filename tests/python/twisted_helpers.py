"""What the Twisted reactor tests share: a bounded reactor run, one that serves clients on
threads of their own, and an echo protocol."""

import threading

from twisted.internet import protocol


def run_bounded(reactor, timeout):
    """Runs reactor until the test stops it; fails the test if it is still running at timeout.

    The delayed stop turns a hang into a failed test instead of a blocked suite.
    """
    timed_out = []

    def give_up():
        timed_out.append(True)
        reactor.stop()

    guard = reactor.callLater(timeout, give_up)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert not timed_out, f"reactor still running after {timeout} s"


def run_with_clients(reactor, client, count: int, timeout, start_after: float = 0) -> None:
    """Runs reactor (bounded, as run_bounded) while `count` threads each run client(i), started
    `start_after` seconds into the run, and stops it once they have all returned."""

    def drive():
        threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reactor.callFromThread(reactor.stop)

    reactor.callLater(start_after, threading.Thread(target=drive).start)
    run_bounded(reactor, timeout)


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)
