// Drift-to-repair latency, measured from inside a namespace where arpguardd runs.
//
//   drift_bench vip|nft|sysctl COUNT VIPS
//
// Injects one drift at a time (deletes a VIP, deletes the whole nft table, or
// sets net.ipv4.conf.all.arp_ignore to 0), then reads the kernel back in a
// tight loop until arpguardd has restored it, and prints p50/p99/max in ms.
// The daemon's policy must hold VIPS addresses from 192.0.2.10 up, method both,
// agent.own_nft_table = false (or the table cannot be deleted), and a contested
// threshold high enough not to back off (the bench repairs one thing hundreds of times).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "kernel/nft_table.h"
#include "kernel/proc_sysctls.h"
#include "kernel/rtnl_addresses.h"

using namespace arpguard;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& message) {
  fmt::print(stderr, "drift_bench: {}\n", message);
  std::exit(1);
}

template <class T>
T must(Result<T> result) {
  if (!result) die(result.error().message());
  return std::move(*result);
}

void must(const Status& status) {
  if (!status) die(status.message());
}

// Waits (reading back every 50 us) until `restored` holds; returns the time taken in ms.
template <class F>
double until_restored(Clock::time_point start, F restored) {
  const auto deadline = start + std::chrono::seconds(5);
  while (!restored()) {
    if (Clock::now() > deadline) die("not restored within 5 s");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) die("usage: drift_bench vip|nft|sysctl COUNT VIPS");
  const std::string kind = argv[1];
  const int count = std::atoi(argv[2]);
  const int vips = std::atoi(argv[3]);
  auto addresses = must(RtnlAddresses::open());
  auto nft = must(NftTable::open());
  ProcSysctls sysctls;
  int lo = 0;
  for (const Link& link : must(addresses->links())) {
    if (link.loopback) lo = link.index;
  }

  std::vector<double> latencies;
  for (int i = 0; i < count; ++i) {
    const auto start = Clock::now();
    if (kind == "vip") {
      const Ipv4Prefix vip{Ipv4{Ipv4::parse("192.0.2.10")->value + static_cast<uint32_t>(i % vips)}, 32};
      must(addresses->remove({DelVip{{vip, "lo"}, lo, "bench"}}));
      latencies.push_back(until_restored(start, [&] {
        const auto now = must(addresses->addresses());
        return std::any_of(now.begin(), now.end(), [&](const Address& a) { return a.prefix == vip; });
      }));
    } else if (kind == "nft") {
      must(nft->apply({NftDeleteTable{}}));
      latencies.push_back(until_restored(start, [&] {
        const ObservedArpTable table = must(nft->observe());
        return table.exists && table.rules.size() >= 2 && static_cast<int>(table.vips.size()) == vips;
      }));
    } else if (kind == "sysctl") {
      const SysctlKey key{"all", kArpIgnore};
      must(sysctls.write(key, 0));
      latencies.push_back(until_restored(start, [&] { return must(sysctls.read({"all"})).at(key) == 1; }));
    } else {
      die("unknown drift kind " + kind);
    }
    // Let each repair settle alone, then wait a random part of a poll interval, so
    // sysctl drifts sample every phase of the poll instead of always the same one.
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + std::rand() % 100));
  }
  std::sort(latencies.begin(), latencies.end());
  auto at = [&](double q) { return latencies[std::min(latencies.size() - 1, static_cast<size_t>(q * latencies.size()))]; };
  fmt::print("{} {} {:.2f} {:.2f} {:.2f}\n", kind, latencies.size(), at(0.50), at(0.99), latencies.back());
  return 0;
}
