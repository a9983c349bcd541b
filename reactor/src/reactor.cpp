#include "reactor/reactor.hpp"

#include <cstdio>
#include <stdexcept>
#include <thread>
#include <vector>

#include "reactor/detail/blocking_monitor.hpp"
#include "reactor/detail/reactor_impl.hpp"
#include "reactor/detail/timer_impl.hpp"
#include "reactor/worker_pool.hpp"
#include "stm/stm.hpp"

namespace tmr::reactor {

namespace detail {
namespace {

// The strand (and reactor) of the callback this thread is running; restored on exit so that a
// callback running another reactor's loop (tests do) sees the right one afterwards.
thread_local const std::shared_ptr<StrandImpl>* tls_strand = nullptr;

class ScopedStrand {
 public:
  explicit ScopedStrand(const std::shared_ptr<StrandImpl>& s) noexcept : saved_(tls_strand) {
    tls_strand = &s;
  }
  ~ScopedStrand() { tls_strand = saved_; }
  ScopedStrand(const ScopedStrand&) = delete;
  ScopedStrand& operator=(const ScopedStrand&) = delete;

 private:
  const std::shared_ptr<StrandImpl>* saved_;
};

}  // namespace

const std::shared_ptr<StrandImpl>* current_strand_impl() noexcept {
  return tls_strand;
}

void at_commit(std::function<void()> fn) {
  if (auto* tx = stm::current_transaction()) {
    tx->on_commit(std::move(fn));
  } else {
    fn();
  }
}

ReactorImpl::ReactorImpl(Reactor& o, ReactorOptions options)
    : owner(o),
      context(static_cast<int>(options.workers == 0
                                   ? std::max(1u, std::thread::hardware_concurrency())
                                   : options.workers)),
      workers(options.workers == 0 ? std::max(1u, std::thread::hardware_concurrency())
                                   : options.workers),
      dispatcher_(options.dispatcher ? std::move(options.dispatcher)
                                     : std::make_shared<AtomicDispatcher>()),
      on_error_(std::move(options.on_error)),
      one_strand_(options.one_strand) {
  work_.emplace(context.get_executor());
}

std::shared_ptr<StrandImpl> ReactorImpl::new_strand() {
  if (!one_strand_) {
    return std::make_shared<StrandImpl>(shared_from_this(), context, next_strand_id_.fetch_add(1));
  }
  std::lock_guard lock(one_strand_mu_);
  auto strand = the_strand_.lock();
  if (!strand) {
    strand =
        std::make_shared<StrandImpl>(shared_from_this(), context, next_strand_id_.fetch_add(1));
    the_strand_ = strand;
  }
  return strand;
}

bool ReactorImpl::run_event(const std::shared_ptr<StrandImpl>& strand, EventKind kind,
                            EventCallback callback) noexcept {
  if (shutting_down()) return false;  // ~Reactor is draining: handlers run, callbacks do not
  ScopedStrand scope(strand);
  const DispatchInfo info{kind, strand->id};
  bool ok = true;
  const bool outer = !strand->in_event;
  strand->in_event = true;
  try {
    dispatcher_->dispatch(info, callback);
  } catch (...) {
    report(info, std::current_exception());
    ok = false;
  }
  if (outer) {
    strand->in_event = false;
    // Actions deferred by this event's commit (a flush of its own connection). An action may
    // dispatch further events, which drain their own: swap before running.
    while (!strand->deferred.empty()) {
      auto actions = std::move(strand->deferred);
      strand->deferred.clear();
      for (auto& action : actions) action();
    }
  }
  return ok;
}

void ReactorImpl::report(const DispatchInfo& info, const std::exception_ptr& error) noexcept {
  try {
    if (on_error_) {
      on_error_(info, error);
      return;
    }
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    // One formatted write that allocates nothing, in a noexcept function: the last resort.
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-vararg)
    std::fprintf(stderr, "tm reactor: unhandled error in callback (event %d, strand %llu): %s\n",
                 static_cast<int>(info.kind), static_cast<unsigned long long>(info.strand_id),
                 e.what());
  } catch (...) {
    std::fputs("tm reactor: unhandled non-standard exception in callback\n", stderr);
  }
}

void ReactorImpl::track(const std::shared_ptr<Closable>& object) {
  std::lock_guard lock(mu_);
  tracked_[object.get()] = object;
}

void ReactorImpl::untrack(const Closable* object) {
  std::lock_guard lock(mu_);
  tracked_.erase(object);
}

void ReactorImpl::close_all() {
  std::vector<std::shared_ptr<Closable>> alive;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, weak] : tracked_) {
      if (auto strong = weak.lock()) alive.push_back(std::move(strong));
    }
  }
  // Outside the lock: closing untracks.
  for (auto& object : alive) object->close_gracefully();
  std::lock_guard lock(mu_);
  work_.reset();
}

void ReactorImpl::shut_down() noexcept {
  std::vector<std::shared_ptr<Closable>> alive;
  {
    std::lock_guard lock(mu_);
    for (auto& [key, weak] : tracked_) {
      if (auto strong = weak.lock()) alive.push_back(std::move(strong));
    }
    tracked_.clear();
    work_.reset();
  }
  shutting_down_.store(true, std::memory_order_release);
  for (auto& object : alive) object->destroy_now();
  alive.clear();
  try {
    context.restart();
    while (context.poll() > 0) {
    }
  } catch (...) {  // a handler threw while draining: nothing is left to report it to
  }
}

}  // namespace detail

// ---- Dispatcher ----

void AtomicDispatcher::dispatch(const DispatchInfo&, EventCallback callback) {
  stm::atomically([&](stm::Transaction& tx) { callback(tx); });
}

// ---- Strand ----

std::uint64_t Strand::id() const noexcept {
  return impl_ ? impl_->id : 0;
}

bool Strand::running_in_this_thread() const noexcept {
  return impl_ && impl_->exec.running_in_this_thread();
}

Strand current_strand() noexcept {
  const auto* s = detail::current_strand_impl();
  return s ? Strand(*s) : Strand();
}

std::uint64_t current_strand_id() noexcept {
  const auto* s = detail::current_strand_impl();
  return s ? (*s)->id : 0;
}

Reactor* current_reactor() noexcept {
  const auto* s = detail::current_strand_impl();
  return s ? &(*s)->reactor.owner : nullptr;
}

// ---- WorkerPool ----

WorkerPool::WorkerPool(boost::asio::io_context& context, unsigned workers)
    : context_(context), workers_(workers == 0 ? 1 : workers) {}

void WorkerPool::run() {
  std::vector<std::thread> threads;
  std::mutex mu;
  std::exception_ptr first_error;  // guarded by mu
  auto body = [&] {
    try {
      context_.run();
    } catch (...) {
      std::lock_guard lock(mu);
      if (!first_error) first_error = std::current_exception();
      context_.stop();
    }
  };
  threads.reserve(workers_ - 1);
  for (unsigned i = 1; i < workers_; ++i) threads.emplace_back(body);
  body();
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

// ---- Reactor ----

Reactor::Reactor(ReactorOptions options)
    : impl_(std::make_shared<detail::ReactorImpl>(*this, std::move(options))) {}

Reactor::~Reactor() {
  impl_->context.stop();
  impl_->shut_down();
}

unsigned Reactor::workers() const noexcept {
  return impl_->workers;
}

bool Reactor::one_strand() const noexcept {
  return impl_->one_strand();
}

void Reactor::run() {
  // With 2+ workers, a monitor lends spare threads while workers are blocked (inevitable.hpp).
  std::optional<detail::BlockingMonitor> monitor;
  if (impl_->workers >= 2) monitor.emplace(*impl_);
  WorkerPool(impl_->context, impl_->workers).run();
}

void Reactor::stop() noexcept {
  impl_->context.stop();
}

bool Reactor::stopped() const noexcept {
  return impl_->context.stopped();
}

void Reactor::restart() {
  impl_->context.restart();
}

void Reactor::close_all() {
  auto* impl = impl_.get();
  detail::at_commit([impl] { impl->close_all(); });
}

void Reactor::notify_fork(ForkEvent event) {
  using ec = boost::asio::execution_context;
  switch (event) {
    case ForkEvent::prepare:
      impl_->context.notify_fork(ec::fork_prepare);
      break;
    case ForkEvent::parent:
      impl_->context.notify_fork(ec::fork_parent);
      break;
    case ForkEvent::child:
      impl_->context.notify_fork(ec::fork_child);
      break;
  }
}

Strand Reactor::make_strand() {
  return Strand(impl_->new_strand());
}

namespace {

std::shared_ptr<detail::StrandImpl> choose_strand(detail::ReactorImpl& impl, StrandChoice choice) {
  const auto* current = detail::current_strand_impl();
  if (choice == StrandChoice::inherit && current && &(*current)->reactor == &impl) return *current;
  return impl.new_strand();
}

}  // namespace

void Reactor::post(Callback fn, StrandChoice choice) {
  post(Strand(choose_strand(*impl_, choice)), std::move(fn));
}

void Reactor::post(const Strand& strand, Callback fn) {
  if (!strand) throw std::invalid_argument("Reactor::post: empty strand");
  // A post from outside every callback is a cross-thread wake-up.
  const EventKind kind = detail::current_strand_impl() ? EventKind::posted : EventKind::wakeup;
  auto* impl = impl_.get();
  detail::at_commit([impl, s = strand.impl(), fn = std::move(fn), kind]() mutable {
    if (impl->shutting_down()) return;
    impl->post_event(std::move(s), kind, std::move(fn));
  });
}

Timer Reactor::call_at(Clock::time_point deadline, Callback fn, StrandChoice choice) {
  return call_at(Strand(choose_strand(*impl_, choice)), deadline, std::move(fn));
}

Timer Reactor::call_later(Clock::duration delay, Callback fn, StrandChoice choice) {
  return call_at(Clock::now() + delay, std::move(fn), choice);
}

Timer Reactor::call_at(const Strand& strand, Clock::time_point deadline, Callback fn) {
  if (!strand) throw std::invalid_argument("Reactor::call_at: empty strand");
  auto timer = std::make_shared<detail::TimerImpl>(*impl_, strand.impl(), std::move(fn));
  impl_->track(timer);
  detail::at_commit([timer, deadline] { timer->arm(deadline); });
  return Timer(timer);
}

Dispatcher& Reactor::dispatcher() noexcept {
  return impl_->dispatcher();
}

boost::asio::io_context& Reactor::context() noexcept {
  return impl_->context;
}

}  // namespace tmr::reactor
