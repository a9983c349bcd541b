// Attaching once per reclamation batch.
//
// Reclamation releases retired Python values in batches, sometimes on a thread whose thread state
// is not attached: a thread ending (its STM record is reclaimed from a thread-local destructor,
// after Python has let go of it) or a C++ worker. safe_decref() would then create and clear a
// thread state per value; on the free-threaded build clearing one collects its mimalloc heaps,
// which made a thread exit releasing a few thousand values take over a minute. The engine's
// release-batch hook lets the bindings attach once for the whole batch instead.

#include <Python.h>

#include "py_ref.hpp"
#include "stm/config.hpp"

namespace tmr::bindings {

namespace {

struct BatchAttachment {
  bool ensured = false;
  PyGILState_STATE state{};
};

void attach_for_batch(bool begin) {
  thread_local BatchAttachment batch;
  if (begin) {
    // A thread inside a bindings driver (thread_slot().saved) queues its releases for its own
    // re-attach; an attached thread needs nothing.
    if (attached() || thread_slot().saved != nullptr || !python_alive()) return;
    batch.state = PyGILState_Ensure();
    batch.ensured = true;
  } else if (batch.ensured) {
    batch.ensured = false;
    PyGILState_Release(batch.state);
  }
}

[[maybe_unused]] const bool installed = (stm::set_release_batch_hook(&attach_for_batch), true);

}  // namespace

}  // namespace tmr::bindings
