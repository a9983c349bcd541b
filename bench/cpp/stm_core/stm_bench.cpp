#include "stm/version.hpp"

#include <benchmark/benchmark.h>

static void BM_Version(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(tmr::stm::version());
}
BENCHMARK(BM_Version);
