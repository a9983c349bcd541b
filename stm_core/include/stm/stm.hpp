#pragma once

// The whole public API of the STM engine. See docs/STM.md for the design.

#include "stm/abort_cause.hpp"
#include "stm/atomically.hpp"
#include "stm/cell.hpp"
#include "stm/config.hpp"
#include "stm/counter.hpp"
#include "stm/log.hpp"
#include "stm/snapshot_pin.hpp"
#include "stm/stats.hpp"
#include "stm/tmap.hpp"
#include "stm/transaction.hpp"
#include "stm/tvar.hpp"
#include "stm/tvector.hpp"
#include "stm/version.hpp"
