# Declares the reactor named "tm" to twisted.application.reactors.
#
# Kept cheap to import: twistd --help-reactors imports every plugin file, so the extension is
# loaded only when the reactor is installed (tm_twisted.install).
from twisted.application.reactors import Reactor

tm = Reactor(
    "tm",
    "tm_twisted",
    "tm-reactor: callbacks as transactions on a pool of worker threads (C++, Boost.Asio)",
)
