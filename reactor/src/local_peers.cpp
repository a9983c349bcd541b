#include "reactor/detail/local_peers.hpp"

#include <algorithm>

namespace tmr::reactor::detail {

namespace {

using Address = boost::asio::ip::address;

// A listener on "::" accepts IPv4 peers as ::ffff:a.b.c.d while the connecting end sees a.b.c.d.
Address canonical(const Address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6());
  }
  return address;
}

}  // namespace

bool LocalPeers::may_be_local(const Endpoint& local, const Endpoint& remote) {
  const Address peer = canonical(remote.address());
  return peer.is_loopback() || peer == canonical(local.address());
}

LocalPeers::Key LocalPeers::key(const Endpoint& from, const Endpoint& to) {
  return {Endpoint(canonical(from.address()), from.port()),
          Endpoint(canonical(to.address()), to.port())};
}

std::shared_ptr<StrandImpl> LocalPeers::strand_for(const Endpoint& local, const Endpoint& remote,
                                                   const MakeStrand& make) {
  std::lock_guard lock(mu_);
  // The other end is registered from its own side: from our remote to our local endpoint.
  const Key other_end = key(/*from=*/remote, /*to=*/local);
  if (const auto other = ends_.find(other_end); other != ends_.end()) {
    auto strand = other->second.lock();
    ends_.erase(other);
    if (strand) return strand;
  }
  auto strand = make();
  if (ends_.size() >= sweep_at_) drop_dead_ends();
  ends_.insert_or_assign(key(local, remote), strand);
  return strand;
}

void LocalPeers::add_listener(const Endpoint& local,
                              const std::shared_ptr<LocalAcceptor>& listener) {
  std::lock_guard lock(mu_);
  listeners_.emplace(local.port(), Listening{canonical(local.address()), listener.get(), listener});
}

void LocalPeers::remove_listener(const LocalAcceptor* listener) {
  std::lock_guard lock(mu_);
  std::erase_if(listeners_, [listener](const auto& entry) { return entry.second.id == listener; });
}

std::shared_ptr<LocalPeers::LocalAcceptor> LocalPeers::listener_for(const Endpoint& remote) const {
  const Address address = canonical(remote.address());
  std::lock_guard lock(mu_);
  const auto [first, last] = listeners_.equal_range(remote.port());
  for (auto it = first; it != last; ++it) {
    const Listening& listening = it->second;
    if (listening.address.is_unspecified() || listening.address == address) {
      if (auto listener = listening.listener.lock()) return listener;
    }
  }
  return nullptr;
}

std::size_t LocalPeers::registered() const {
  std::lock_guard lock(mu_);
  return ends_.size();
}

void LocalPeers::drop_dead_ends() {
  std::erase_if(ends_, [](const auto& entry) { return entry.second.expired(); });
  sweep_at_ = std::max(kFirstSweep, 2 * ends_.size());
}

}  // namespace tmr::reactor::detail
