#pragma once

#include <memory>
#include <string>
#include <system_error>

#include "reactor/stream_transport.hpp"

namespace tmr::reactor {

class Reactor;

/// Unix-domain stream sockets: the same transports and handlers as TCP, addressed by a path.
/// Throwing overloads raise std::system_error; `std::error_code&` overloads return null.

/// Binds `path` (which must not exist) and listens.
std::shared_ptr<StreamListener> unix_listen(Reactor& reactor, const std::string& path,
                                            HandlerFactory factory, ListenOptions options = {});
std::shared_ptr<StreamListener> unix_listen(Reactor& reactor, const std::string& path,
                                            HandlerFactory factory, ListenOptions options,
                                            std::error_code& ec);

std::shared_ptr<StreamTransport> unix_connect(Reactor& reactor, const std::string& path,
                                              std::shared_ptr<StreamHandler> handler);
std::shared_ptr<StreamTransport> unix_connect(Reactor& reactor, const std::string& path,
                                              std::shared_ptr<StreamHandler> handler,
                                              std::error_code& ec);

/// Adopts a connected Unix stream socket (for instance one end of socketpair()).
std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler);
std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler,
                                            std::error_code& ec);
/// As above, on `strand` instead of a new strand (tcp_adopt's).
std::shared_ptr<StreamTransport> unix_adopt(Reactor& reactor, int fd,
                                            std::shared_ptr<StreamHandler> handler,
                                            const Strand& strand, std::error_code& ec);

}  // namespace tmr::reactor
