// The peers side of the chaos, each a loop for its own thread until `stop`:
// the readiness probers a director would run (HTTP /ready every ~20 ms,
// agent-check every ~50 ms, from the client's namespace), and rabbles of
// fast, slow, rude and garbage HTTP and control-socket clients.
//
// Thread-safety: each function runs on its own thread; they share only Records.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "tests/chaos/records.h"

namespace arpguard::chaos {

struct ClientSetup {
  std::string client_netns;
  std::string server_ip = "192.0.2.1";
  int http_port = 9480;
  int agent_port = 9777;
  std::string arpguard;  ///< the CLI
  std::string socket;    ///< the control socket
  std::vector<std::string> vip_paths;  ///< "/ready/<vip>" for every policy's VIPs
};

/// GET /ready on a new connection every ~20 ms; each answer into Records::ready().
void probe_ready(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop);
/// An agent-check connection every ~50 ms; each line into Records::agent().
void probe_agent_check(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop);
/// HTTP peers of every manner, one at a time, from the client's namespace.
void http_rabble(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop, uint64_t seed);
/// Control-socket peers of every manner, one at a time, and now and then a short drain.
void control_rabble(const ClientSetup& setup, Records& records, const std::atomic<bool>& stop, uint64_t seed);

}  // namespace arpguard::chaos
