// The sd_notify protocol, by hand: one datagram of "KEY=VALUE" lines to the
// unix socket named by $NOTIFY_SOCKET (a path, or "@name" for an abstract
// one). Written here rather than linking libsystemd, which maps compression
// and crypto libraries arpguardd never uses. Also the watchdog interval from
// $WATCHDOG_USEC / $WATCHDOG_PID. Never blocks; failures are ignored, as
// sd_notify(3) would. Not thread-safe.
#pragma once

#include <optional>
#include <string>

namespace arpguard {

class Notifier {
 public:
  /// Reads the environment once; without $NOTIFY_SOCKET every call does nothing.
  Notifier();
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  void send(const std::string& text) const;
  /// Seconds between watchdog pings the service manager expects, if it expects any.
  std::optional<double> watchdog_interval() const { return watchdog_; }

 private:
  int fd_ = -1;
  std::string address_;
  std::optional<double> watchdog_;
};

}  // namespace arpguard
