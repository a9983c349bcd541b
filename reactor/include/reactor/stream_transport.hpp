#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "reactor/strand.hpp"
#include "reactor/write_chunk.hpp"

namespace tmr::stm {
class Transaction;
}

namespace tmr::reactor {

class StreamTransport;

/// The owner of a stream connection (a Twisted protocol, an asyncio protocol). Every method is
/// called inside a transaction on the connection's strand, so calls on one connection never
/// overlap and come in order. A restartable transaction may run a method more than once: the
/// effects that count are the transactional ones (managed state, transport calls).
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;

  /// The connection is established (accepted, connected or adopted).
  virtual void on_connected(stm::Transaction&, const std::shared_ptr<StreamTransport>&) {}
  /// Bytes received. `data` stays valid for the whole dispatch, every attempt included.
  virtual void on_data(stm::Transaction&, std::span<const char> data) = 0;
  /// The peer shut down its sending side. Return true to keep the connection open for writing
  /// (a half-closeable protocol); false closes it once pending writes are sent.
  virtual bool on_eof(stm::Transaction&) { return false; }
  /// The connection is gone: `ec` is empty after an orderly close, otherwise the cause
  /// (connection_reset, connection_aborted after `abort()`, ...). Called exactly once.
  virtual void on_closed(stm::Transaction&, std::error_code) {}
  /// An outgoing connection could not be made (refused, unreachable, ..., or operation_aborted
  /// when the transport was closed before it connected). Called instead of on_connected and
  /// on_closed.
  virtual void on_connect_failed(stm::Transaction&, std::error_code) {}
  /// Flow control: the committed-but-unsent bytes rose above the high water mark.
  virtual void on_pause_writing(stm::Transaction&) {}
  /// ... and fell back to the low water mark.
  virtual void on_resume_writing(stm::Transaction&) {}
};

/// A connected byte stream (TCP or Unix). Requests made inside a transaction take effect at its
/// commit, in commit order; an aborted attempt sends nothing. Thread-safe.
class StreamTransport {
 public:
  virtual ~StreamTransport() = default;

  /// Queues `data` for sending. Ignored after abort() or shutdown_write() and once the connection
  /// is closed. A write that commits after close() but before the close is carried out (while
  /// the bytes before it are being sent, or from the handler's last on_resume_writing) is sent
  /// before the close, as stock transports send what is written before their buffer drains.
  /// A borrowed chunk is sent from its owner's bytes, which the transport holds until sent.
  virtual void write(WriteChunk data) = 0;
  void write(std::string data) { write(WriteChunk(std::move(data))); }
  void write(std::string_view data) { write(std::string(data)); }
  void write(const char* data) { write(std::string(data)); }
  /// Half-close: shuts down the sending side once pending writes are sent.
  virtual void shutdown_write() = 0;
  /// Orderly close: sends pending writes (and those that commit before it is carried out, see
  /// write()), then closes. on_closed(ec = {}) follows.
  virtual void close() = 0;
  /// Abortive close, as Twisted's abortConnection: drops pending writes and closes at once with
  /// a reset (SO_LINGER 0: RST, and what the kernel still buffers is dropped too).
  /// on_closed(connection_aborted).
  virtual void abort() = 0;
  /// Abortive close, as asyncio's transport.abort(): the pending writes are handed to the kernel
  /// as far as it takes them now (asyncio's write() hands bytes to the kernel at once, so those
  /// written before the abort are there already), the rest is dropped, and the socket is closed
  /// without SO_LINGER 0: the peer gets those bytes, then the end of the stream (a reset only
  /// where received bytes are left unread, as the kernel does on any close).
  /// on_closed(connection_aborted).
  virtual void abort_keeping_sent() = 0;
  /// Stops / restarts delivering on_data (back-pressure toward the peer).
  virtual void pause_reading() = 0;
  virtual void resume_reading() = 0;
  /// Flow-control limits for on_pause_writing / on_resume_writing.
  virtual void set_write_buffer_limits(std::size_t high, std::size_t low) = 0;
  /// Committed bytes not yet handed to the kernel.
  virtual std::size_t write_buffer_size() const = 0;
  /// The caller paused its writer itself, for bytes its transaction had not committed yet (as
  /// asyncio's write() pauses the protocol at once): returns true when on_resume_writing will
  /// follow once the committed bytes fall to the low water mark (or the connection is closing,
  /// when none is due), false when they are there already and the caller must resume it.
  virtual bool resume_when_drained() = 0;
  /// Addresses as "host:port" ("[v6]:port") or a socket path.
  virtual std::string local_address() const = 0;
  virtual std::string peer_address() const = 0;
  /// The OS descriptor, or -1 once closed.
  virtual int native_handle() const = 0;
  virtual bool is_closing() const = 0;
  /// The connection's strand, on which its handler runs (known before it connects, so that a
  /// binding can post work ordered with the connection's callbacks).
  virtual Strand strand() const = 0;
};

/// Creates the handler of an accepted connection, inside the accept transaction. Returning null
/// refuses the connection (it is closed at once).
using HandlerFactory = std::function<std::shared_ptr<StreamHandler>(stm::Transaction&)>;

/// A listening stream socket.
class StreamListener {
 public:
  virtual ~StreamListener() = default;
  /// The bound address, as for StreamTransport::local_address.
  virtual std::string local_address() const = 0;
  /// The bound port (0 for a Unix socket).
  virtual unsigned short port() const = 0;
  /// The listening descriptor, or -1 once closed.
  virtual int native_handle() const = 0;
  /// Stops accepting. At commit inside a transaction. Idempotent.
  virtual void close() = 0;
};

/// Options of a listener.
struct ListenOptions {
  int backlog = 1024;
  bool reuse_address = true;
  /// SO_REUSEPORT: several listeners (or processes) share the port, the kernel spreads
  /// connections among them. TCP only.
  bool reuse_port = false;
  /// IPv6 only: do not accept IPv4-mapped connections.
  bool v6_only = false;
  /// Told (in a transaction on the listener's strand) about accept errors, such as EMFILE,
  /// after which the listener backs off. Null: reported to ReactorOptions::on_error.
  std::function<void(stm::Transaction&, std::error_code)> on_error;
};

}  // namespace tmr::reactor
