// The kernel half of the sampler: from inside the real server's namespace,
// reads what arpguard is responsible for with the ordinary tools (ip -j,
// nft -j, /proc/sys) every ~20 ms and judges it against each policy.
//
// Thread-safety: sample_kernel() runs on its own thread.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "tests/chaos/records.h"

namespace arpguard::chaos {

/// One reading of the calling thread's network namespace.
KernelFacts read_kernel();

/// Reads, judges against every policy and records, until `stop`; publishes each verdict on the layers to `latest`.
void sample_kernel(const std::string& rs_netns, const std::vector<ExpectedPolicy>& policies, const Universe& universe,
                   Records& records, LatestSample& latest, const std::atomic<bool>& stop);

/// Judges `facts` against every policy.
KernelSample judge(const KernelFacts& facts, const std::vector<ExpectedPolicy>& policies, const Universe& universe);

}  // namespace arpguard::chaos
