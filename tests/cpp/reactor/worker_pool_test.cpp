#include "reactor/worker_pool.hpp"

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <mutex>
#include <set>
#include <thread>

namespace tmr::reactor {
namespace {

TEST(WorkerPool, RunsHandlersOnNThreadsAndReturnsWhenIdle) {
  boost::asio::io_context context(2);
  std::mutex mu;
  std::set<std::thread::id> threads;
  for (int i = 0; i < 64; ++i) {
    boost::asio::post(context, [&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      std::lock_guard lock(mu);
      threads.insert(std::this_thread::get_id());
    });
  }
  WorkerPool pool(context, 2);
  EXPECT_EQ(pool.size(), 2u);
  pool.run();
  EXPECT_EQ(threads.size(), 2u);
}

TEST(WorkerPool, RethrowsAnEscapedException) {
  boost::asio::io_context context(1);
  boost::asio::post(context, [] { throw std::runtime_error("escaped"); });
  WorkerPool pool(context, 1);
  EXPECT_THROW(pool.run(), std::runtime_error);
}

}  // namespace
}  // namespace tmr::reactor
