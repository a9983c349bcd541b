"""What the Twisted reactor tests share: a bounded reactor run and an echo protocol."""

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


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)
