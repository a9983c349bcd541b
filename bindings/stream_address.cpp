#include "stream_address.hpp"

#include <net/if.h>

#include <cstdlib>

namespace tmr::bindings {

py::object address_object(const std::string& text, bool is_unix) {
  if (is_unix) return py::str(text);
  if (text.empty()) return py::none();
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return py::str(text);
  const int port = std::stoi(text.substr(colon + 1));
  if (text.front() != '[') return py::make_tuple(text.substr(0, colon), port);
  const std::string host = text.substr(1, colon - 2);  // without the brackets
  unsigned long scope = 0;
  if (const auto percent = host.find('%'); percent != std::string::npos) {
    const std::string name = host.substr(percent + 1);
    scope = ::if_nametoindex(name.c_str());
    if (scope == 0) scope = std::strtoul(name.c_str(), nullptr, 10);
  }
  return py::make_tuple(host, port, 0, scope);
}

unsigned short port_number(int port) {
  if (port < 0 || port > 65535) throw py::value_error("port must be 0-65535");
  return static_cast<unsigned short>(port);
}

}  // namespace tmr::bindings
