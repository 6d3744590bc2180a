#include "core/supervisor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <type_traits>
#include <utility>

#include "arpguard_config.h"
#include "core/overloaded.h"
#include "rules/tables.h"

namespace arpguard {

namespace {

constexpr double kInconclusiveAuditRetry = 5.0;  // seconds
constexpr double kDebounceSeconds = 0.001;  // folds a burst (`ip addr flush`) into one repair
// Changes of nothing arpguard's (addresses on a busy NIC) are read in batches
// this far apart; one of arpguard's among them waits at most this long.
constexpr double kQuietBatchSeconds = 0.004;
constexpr double kFirstRetry = 0.1;
constexpr double kMaxRetry = 30.0;
constexpr double kObserveRetry = 1.0;
constexpr double kFreshnessSlack = 1.0;      // readiness needs sysctls read within a poll interval plus this
constexpr int kMaxImmediateRounds = 4;       // diffs in a row without waiting, before falling back to a retry
constexpr size_t kCausesKept = 20;
constexpr size_t kCausesShown = 3;
constexpr size_t kRecentRepairsKept = 10;
constexpr size_t kLinesLogged = 8;
constexpr size_t kReasonsSummarised = 10;
constexpr size_t kNotReadyVipsShown = 100;
constexpr int kRemovalSteps = 4;
constexpr double kFailureLogSeconds = 60;

// Whether nftables notified the change (its commits end with a mark, NEWGEN;
// rtnetlink's changes have none).
bool from_nftables(const Delta& change) {
  return std::visit(
      [](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        return std::is_same_v<T, delta::TableUpsert> || std::is_same_v<T, delta::TableRemoved> ||
               std::is_same_v<T, delta::ChainUpsert> || std::is_same_v<T, delta::ChainRemoved> ||
               std::is_same_v<T, delta::SetUpsert> || std::is_same_v<T, delta::SetRemoved> ||
               std::is_same_v<T, delta::RuleUpsert> || std::is_same_v<T, delta::RuleRemoved> ||
               std::is_same_v<T, delta::ElementsAdded> || std::is_same_v<T, delta::ElementsRemoved>;
      },
      change);
}

// The VIPs among `resources` (a map keyed by Resource).
template <class Map>
std::vector<IpPrefix> vip_prefixes(const Map& resources) {
  std::vector<IpPrefix> out;
  for (const auto& [resource, value] : resources) {
    if (resource.kind != Resource::Kind::kVip) continue;
    if (auto prefix = IpPrefix::parse(resource.name)) out.push_back(*prefix);
  }
  return out;
}

std::vector<std::string> resource_names(const std::vector<Resource>& resources) {
  std::vector<std::string> out;
  for (const Resource& r : resources) out.push_back(r.str());
  return out;
}

std::string joined(const std::vector<std::string>& items, size_t shown) {
  std::vector<std::string> head(items.begin(), items.begin() + static_cast<long>(std::min(shown, items.size())));
  std::string out = fmt::format("{}", fmt::join(head, "; "));
  if (items.size() > shown) out += fmt::format("; and {} more", items.size() - shown);
  return out;
}

// Seconds between sweep batches: at most one a second, and fewer for few VIPs.
double sweep_tick(size_t vips, double interval) {
  if (vips == 0) return interval;
  return std::max(1.0, interval / static_cast<double>(vips));
}

double backoff(int streak) { return std::min(kMaxRetry, kFirstRetry * std::pow(2.0, std::max(0, streak - 1))); }

std::vector<IpRange> regions_of(const Plan& plan) {
  std::vector<IpRange> out;
  for (const Action& action : plan.actions) {
    std::visit(Overloaded{
                   [&](const DelAddress& a) { out.push_back(IpRange::of(a.key.prefix())); },
                   [&](const DelRoute& a) { out.push_back(IpRange::of(a.key.destination)); },
                   [&](const RoutingChange&) {},
                   [&](const AddAddress& a) { out.push_back(IpRange::of(a.key.prefix())); },
                   [&](const AddRoute& a) { out.push_back(IpRange::of(a.key.destination)); },
                   [&](const SetSysctl&) {},
                   [&](const NftChange& c) {
                     std::visit(Overloaded{
                                    [&](const nft_change::AddElements& e) {
                                      for (const nft::Element& el : e.elements) out.push_back(el.addresses);
                                    },
                                    [&](const nft_change::DelElements& e) {
                                      for (const nft::Element& el : e.elements) out.push_back(el.addresses);
                                    },
                                    [&](const auto&) {},
                                },
                                c);
                   },
               },
               action);
  }
  return out;
}

std::vector<MacAddress> director_macs(const Policy& policy) {
  std::vector<MacAddress> out;
  for (const std::string& text : policy.readiness.director_macs) {
    if (auto mac = MacAddress::parse(text)) out.push_back(*mac);
  }
  return out;
}

void merge_scope(DiffScope& into, const DiffScope& from) {
  into.everything |= from.everything;
  into.host |= from.host;
  into.regions.insert(into.regions.end(), from.regions.begin(), from.regions.end());
}

}  // namespace

Supervisor::Supervisor(Policy policy, Options options)
    : policy_(std::move(policy)),
      options_(std::move(options)),
      contest_(policy_.agent.contested_repairs, policy_.agent.contested_window_ms / 1000.0),
      draining_(options_.draining),
      watch_(director_macs(policy_)) {
  set_desired_vips(make_desired_vips(policy_));
}

void Supervisor::set_desired_vips(DesiredVips vips) {
  desired_.vips = std::move(vips);
  route_vip_devices_v4_.clear();
  for (const DesiredVip& v : desired_.vips.bound) {
    if (v.kind == VipKind::kRoute && v.prefix.family() == Family::kV4) route_vip_devices_v4_.insert(v.device);
  }
}

void Supervisor::log(Out& out, LogLevel level, std::string text) const {
  out.emplace_back(command::Log{level, std::move(text)});
}

std::vector<Command> Supervisor::start(double now) {
  Out out;
  log(out, LogLevel::kInfo,
      fmt::format("policy {}: {} VIP(s), method {}, on_stop {}", policy_.file, policy_.vips.size(),
                  to_string(policy_.arp.method), to_string(policy_.agent.on_stop)));
  if (policy_.vips.empty()) log(out, LogLevel::kNotice, "no VIPs in the policy: nothing to guard, idling");
  if (draining_) log(out, LogLevel::kNotice, "draining, as the operator asked before this start (arpguard resume ends it)");
  out.emplace_back(command::Notify{"STATUS=reading kernel state"});
  out.emplace_back(command::ObserveAll{});
  resync_in_flight_ = true;
  out.emplace_back(command::ArmTimer{TimerId::kSysctlPoll, now + policy_.agent.sysctl_poll_ms / 1000.0});
  if (policy_.agent.audit_interval_ms > 0) {
    out.emplace_back(command::ArmTimer{TimerId::kAudit, now + policy_.agent.audit_interval_ms / 1000.0});
  }
  const bool checks = std::any_of(policy_.vips.begin(), policy_.vips.end(), [](const VipPolicy& v) { return v.check_port; });
  if (checks) out.emplace_back(command::ArmTimer{TimerId::kChecks, now});
  arm_sweep(now, out);
  return out;
}

std::vector<Command> Supervisor::handle(Input input, double now) {
  Out out;
  std::visit(Overloaded{
                 [&](input::Observed& in) { on_observed(std::move(in.observed), in.quiet, now, out); },
                 [&](input::Events& in) { on_events(in, now, out); },
                 [&](input::Sysctls& in) { on_sysctls(std::move(in.values), now, out); },
                 [&](input::Conntrack& in) {
                   if (in.fill) conntrack_ = *in.fill;
                 },
                 [&](input::Applied& in) { on_applied(in.outcome, now, out); },
                 [&](input::Timer& in) { on_timer(in.id, now, out); },
                 [&](input::CheckDone& in) { on_check(in, now, out); },
                 [&](input::Drain& in) {
                   if (in.draining != draining_) {
                     log(out, LogLevel::kNotice, in.draining ? "draining: the director is told to send no new connections"
                                                             : "resumed: the director may send new connections again");
                   }
                   draining_ = in.draining;
                   out.emplace_back(command::PersistDrain{draining_});
                   notify_ready_state(now, out);
                 },
                 [&](input::Reload& in) { on_reload(std::move(in), now, out); },
                 [&](input::Stop&) { on_stop(now, out); },
                 [&](input::Wire& in) { on_wire(in, now, out); },
                 [&](input::Routes& in) { on_routes(std::move(in.answers), now, out); },
             },
             input);
  return out;
}

// ---- kernel state ----

// The kernel deletes a device's IPv4 routes without a word when its last IPv4
// address goes (`ip addr flush dev lo`) or it goes down (fib_sync_down_dev):
// route VIPs on it may be gone though no RTM_DELROUTE came. Read everything.
bool Supervisor::route_vips_lost_silently(const Delta& d) const {
  int index = 0;
  if (const auto* removed = std::get_if<delta::AddressRemoved>(&d);
      removed && removed->key.address.family == Family::kV4) {
    index = removed->key.link_index;
  } else if (const auto* link = std::get_if<delta::LinkUpsert>(&d); link && !link->link.up) {
    index = link->link.index;
  } else {
    return false;
  }
  const Link* link = cache_.link_at(index);
  if (!link) return false;
  // Looked up, not searched: a burst of 10,000 address changes on another
  // interface went through 100,000 VIPs for each.
  if (!route_vip_devices_v4_.count(link->name)) return false;
  if (std::holds_alternative<delta::LinkUpsert>(d)) return true;
  for (const auto& [key, info] : cache_.addresses) {
    if (key.link_index == index && key.address.family == Family::kV4) return false;
  }
  return true;
}

void Supervisor::request_resync(Out& out, const char* why) {
  if (resync_in_flight_) {
    lost_during_read_ = true;  // the read under way is that resync, if it works
    return;
  }
  log(out, LogLevel::kWarning, why);
  resync_in_flight_ = true;
  out.emplace_back(command::ObserveAll{});
}

void Supervisor::on_observed(Result<Observed> observed, bool quiet, double now, Out& out) {
  const bool audit = audit_in_flight_;
  const bool lost = lost_during_read_;
  // An audit that proves nothing is tried again soon.
  const double audit_retry = std::min(kInconclusiveAuditRetry, policy_.agent.audit_interval_ms / 1000.0);
  resync_in_flight_ = false;
  audit_in_flight_ = false;
  lost_during_read_ = false;
  if (!observed && audit && have_cache_ && !lost && !need_observe_) {
    // An audit only checks a cache that the kernel's events keep. A read that
    // fails (a dump interrupted again and again by a burst of changes to
    // someone else's addresses) leaves that cache as sound as it was: the
    // audit is inconclusive and tried again soon, and readiness stays as is.
    ++audits_inconclusive_;
    log(out, LogLevel::kNotice,
        fmt::format("audit: cannot read kernel state ({}): tried again in {:.0f} s", observed.error().message(),
                    audit_retry));
    out.emplace_back(command::ArmTimer{TimerId::kAudit, now + audit_retry});
    if (phase_ == Phase::kRunning) reconcile(now, out);  // what came in during the read
    notify_ready_state(now, out);
    return;
  }
  if (!observed) {
    observe_error_ = observed.error().message();
    need_observe_ = true;  // the cache may have missed something: read everything at the retry
    log(out, LogLevel::kError, fmt::format("cannot read kernel state: {}", *observe_error_));
    arm_retry(now + kObserveRetry, out);
    notify_ready_state(now, out);
    return;
  }
  // A read during which the kernel notified changes is no picture to hold
  // the cache against (those changes follow it, and the cache had not seen
  // them): that audit is not counted, and the next one is not far off.
  if (audit && have_cache_ && !quiet) {
    ++audits_inconclusive_;
    out.emplace_back(command::ArmTimer{TimerId::kAudit, now + audit_retry});
  }
  if (audit && have_cache_ && quiet) {
    const std::vector<std::string> found = divergences(cache_, *observed);
    ++audits_total_;
    divergence_total_ += found.size();
    if (!found.empty()) {
      log(out, LogLevel::kWarning,
          fmt::format("audit: the cache differed from the kernel in {} place(s): {}", found.size(), joined(found, 5)));
    }
  }
  if (phase_ == Phase::kStarting) {
    // The checks of the policy that need the kernel: refused before anything changes (I3).
    std::vector<Diagnostic> errors = check_against_kernel(policy_, *observed);
    if (!errors.empty()) {
      for (const Diagnostic& d : errors) log(out, LogLevel::kError, d.str());
      phase_ = Phase::kStopped;
      out.emplace_back(command::Exit{1});
      return;
    }
    if (observed->state_error) {
      log(out, LogLevel::kWarning,
          fmt::format("the state record cannot be read ({}): arpguard keeps whatever it finds configured", *observed->state_error));
    }
  }
  if (observed->state_notice) log(out, LogLevel::kWarning, *observed->state_notice);
  if (record_error_ && !observed->state_unsaved) log(out, LogLevel::kNotice, "the state record is written again");
  if (observed->state_unsaved && observed->state_unsaved != record_error_) {
    log(out, LogLevel::kError, fmt::format("cannot record state: {}", *observed->state_unsaved));
  }
  cache_ = std::move(*observed);
  have_cache_ = true;
  record_error_ = cache_.state_unsaved;  // a full read tried the write again
  observe_error_.reset();
  sysctls_read_at_ = now;
  rebuild_desired_host();
  pending_ = DiffScope::all();
  pending_any_ = true;
  readiness_all_dirty_ = true;
  if (phase_ == Phase::kStarting) phase_ = Phase::kRunning;
  if (phase_ == Phase::kRunning) reconcile(now, out);
  notify_ready_state(now, out);
}

void Supervisor::on_events(const input::Events& in, double now, Out& out) {
  if (in.error) {
    request_resync(out, fmt::format("kernel events: {}: full resync", in.error->message()).c_str());
  }
  if (in.lost) request_resync(out, "kernel events were lost (socket overrun): full resync");
  if (in.unheard) {
    request_resync(out, "another process committed to nftables during one of arpguard's own big commits, unheard: "
                        "full resync");
  }
  if (!have_cache_) return;  // the dump under way will hold them
  Touched touched;
  bool cache_changed = false;
  bool rtnetlink_news = false;  // a change of arpguard's that may be one of a burst
  for (const KernelEvent& event : in.events) {
    const bool side_effect = is_side_effect(event);
    const bool ours = std::find(options_.own_portids.begin(), options_.own_portids.end(), event.sender_portid) !=
                      options_.own_portids.end();
    // Described before it is applied: a removal names what it removed. Our
    // own changes are no cause (an apply's thousands of notifications).
    std::optional<std::string> cause;
    if (!ours && !side_effect && causes_.size() < kCausesKept) cause = describe(event.delta, cache_);
    Touched t = apply_delta(cache_, event.delta);
    if (t.routing || t.host || t.all || t.link_addresses) flux_dirty_ = true;
    if (!t.changed && !t.resync) continue;
    cache_changed |= t.changed;
    const bool lost_silently = route_vips_lost_silently(event.delta);
    t.resync |= lost_silently;
    // Only what concerns arpguard is news: not the thousands of addresses a
    // busy NIC gains and loses. What arpguard changed itself concerns it: not
    // looked up again for each of the 100,000 elements a restored table holds.
    if (!ours) std::erase_if(t.regions, [&](const IpRange& r) { return !concerns_arpguard(desired_, cache_, r); });
    // One of arpguard's: host-wide too, as any address change on a NIC was (a
    // table kept for an address there goes once the address has gone). Else
    // only when it moves the NIC's ARP sender.
    if (t.link_addresses && !t.host && !t.all) {
      t.host = !t.regions.empty() || !senders_unmoved(policy_, desired_.vips, cache_, desired_.host);
    }
    if (!t.all && !t.host && !t.every_vip && !t.resync && t.regions.empty()) continue;
    if (!ours && !side_effect) {
      if (cause) causes_.push_back(std::move(*cause));
      ++foreign_changes_;
    }
    rtnetlink_news |= !from_nftables(event.delta);
    if (lost_silently) {
      touched.merge(std::move(t));
      continue;
    }
    if (const auto* added = std::get_if<delta::AddressUpsert>(&event.delta);
        added && desired_.vips.is_redirected(added->key.address)) {
      // arpguard leaves an address it did not add, but a redirected VIP
      // configured on this host is answered for (I2: reported loudly).
      const Link* link = cache_.link_at(added->key.link_index);
      log(out, LogLevel::kWarning,
          fmt::format("redirected vip {} was configured on {} (not by arpguard): this host may answer ARP/NDP for it "
                      "and serves it locally; remove it, or make the VIP bound",
                      added->key.address.str(), link ? link->name : std::to_string(added->key.link_index)));
    }
    touched.merge(std::move(t));
  }
  if (touched.resync) request_resync(out, "a kernel event did not fit what arpguard knew: full resync");
  if (!touched.changed) {
    // Nothing of arpguard's: the debounce only lets the next notifications
    // wait in their sockets (Driver::events_can_wait), a burst read at once.
    if (cache_changed && !applying_) schedule_debounce(now, out, kQuietBatchSeconds);
    return;
  }
  if (touched.host || touched.all) rebuild_desired_host();
  merge_scope(pending_, touched.all ? DiffScope::all() : DiffScope::of(touched.regions, touched.host));
  pending_any_ = true;
  if (touched.all || touched.every_vip) {
    readiness_all_dirty_ = true;
  } else {
    readiness_dirty_.insert(readiness_dirty_.end(), touched.regions.begin(), touched.regions.end());
  }
  // A commit nftables has finished notifying is whole: nothing of it is
  // left to fold in, and the repair goes at once. Every moment counts there:
  // the process that made the change, as it closes its socket, holds the
  // nftables commit mutex for an RCU grace period (10 to 20 ms).
  const bool whole = in.nftables_whole && !rtnetlink_news;
  if (!applying_) schedule_debounce(now, out, whole ? 0.0 : kDebounceSeconds);
}

bool Supervisor::is_side_effect(const KernelEvent& event) const {
  const Delta& change = event.delta;
  // The kernel's own local routes come and go with addresses: the address is the news.
  auto kernel_route = [&](const RouteKey& key) {
    auto it = cache_.local_routes.find(key);
    return it != cache_.local_routes.end() && it->second.protocol == kRouteProtoKernel;
  };
  if (const auto* up = std::get_if<delta::RouteUpsert>(&change)) return up->info.protocol == kRouteProtoKernel;
  if (const auto* gone = std::get_if<delta::RouteRemoved>(&change)) return kernel_route(gone->key);
  // IPv6 names no sender for any address change (inet6_ifa_notify says 0),
  // arpguard's own included. Said by the kernel, a VIP put on its device as
  // arpguard wants it (DAD done or skipped, whoever added it), bookkeeping on
  // another address already there, or an address gone that is no VIP where
  // it was (arpguard's own removal of a VIP dropped from the policy, or of a
  // misplaced one): none is someone else's change to what arpguard protects.
  // One that leaves a VIP otherwise (`ip -6 addr change ... preferred_lft
  // forever`) is.
  if (event.sender_portid != 0) return false;
  auto vip_at = [&](const AddressKey& key) -> const DesiredVip* {
    const DesiredVip* vip = desired_.vips.bound_containing(key.address);
    const Link* link = cache_.link_at(key.link_index);
    const bool there = vip && vip->kind == VipKind::kAddress && vip->prefix.length == key.length && link &&
                       link->name == vip->device;
    return there ? vip : nullptr;
  };
  if (const auto* up = std::get_if<delta::AddressUpsert>(&change)) {
    if (const DesiredVip* vip = vip_at(up->key)) {
      return up->info.deprecated() == vip->deprecated &&
             (up->key.address.family == Family::kV6 || up->info.scope == vip->scope);
    }
    return cache_.addresses.count(up->key) != 0;
  }
  if (const auto* gone = std::get_if<delta::AddressRemoved>(&change)) return vip_at(gone->key) == nullptr;
  return false;
}

void Supervisor::on_sysctls(Result<SysctlValues> values, double now, Out& out) {
  if (!values) {
    const std::string error = values.error().message();
    if (sysctl_error_ != error) log(out, LogLevel::kError, fmt::format("cannot read sysctls: {}", error));
    sysctl_error_ = error;
    return;
  }
  sysctl_error_.reset();
  sysctls_read_at_ = now;
  if (!have_cache_) return;
  bool changed = false;
  for (const auto& [key, value] : *values) {
    auto it = cache_.sysctls.find(key);
    if (it == cache_.sysctls.end() || it->second != value) {
      changed = true;
      cache_.sysctls[key] = value;
    }
  }
  if (changed) flux_dirty_ = true;
  analyse_flux(out);
  if (!changed) return;
  rebuild_desired_host();
  std::vector<Reason> gaps = sysctl_gaps(desired_, cache_.sysctls);
  for (const Reason& r : gaps) {
    if (causes_.size() < kCausesKept) causes_.push_back(r.text);
  }
  if (!gaps.empty()) ++foreign_changes_;
  pending_.host = true;
  pending_any_ = true;
  if (!applying_) reconcile(now, out);
}

// ---- reconciling ----

void Supervisor::rebuild_desired_host() {
  desired_.host = make_desired_host(policy_, desired_.vips, cache_, /*daemon=*/true);
}

void Supervisor::schedule_debounce(double now, Out& out, double delay) {
  if (debounce_at_ >= 0 && debounce_at_ <= now + delay) return;
  debounce_at_ = now + delay;
  out.emplace_back(command::ArmTimer{TimerId::kDebounce, debounce_at_});
}

void Supervisor::arm_retry(double at, Out& out) {
  if (retry_at_ >= 0 && retry_at_ <= at) return;
  retry_at_ = at;
  out.emplace_back(command::ArmTimer{TimerId::kRetry, at});
}

void Supervisor::reconcile(double now, Out& out, bool follow_up) {
  if (phase_ != Phase::kRunning || !have_cache_ || applying_ || resync_in_flight_) return;
  // Rounds that follow an apply with no news in between; anything else starts the count again.
  if (!follow_up) immediate_rounds_ = 0;
  if (!pending_any_) {
    notify_ready_state(now, out);
    return;
  }
  const DiffScope scope = std::move(pending_);
  pending_ = DiffScope::of({}, false);
  pending_any_ = false;
  Plan plan = Diff(desired_, cache_, scope);
  forget_failures_not_in(plan, scope, out);
  if (plan.empty()) {
    immediate_rounds_ = 0;
    churn_streak_ = 0;
    causes_.clear();
    foreign_changes_ = 0;
    if (failing_.empty()) converged_ = true;
    for (uint64_t request : pending_reloads_) {
      out.emplace_back(command::ReplyReload{ReloadReply{request, true, failing_.empty(), {}, problems()}});
    }
    pending_reloads_.clear();
    first_round_done_ = true;
    reloading_ = false;
    notify_ready_state(now, out);
    return;
  }

  // Someone keeps undoing it, or our own writes keep failing: wait before trying again.
  // With nothing contested and nothing failing there is nothing to wait for, and
  // naming each resource of a plan of 100,000 VIPs would only cost time.
  std::vector<Resource> resources;
  double allowed = now;
  if (contest_.any_contested() || !failure_streak_.empty()) {
    for (const Action& action : plan.actions) resources.push_back(resource_of(action));
    std::sort(resources.begin(), resources.end());
    resources.erase(std::unique(resources.begin(), resources.end()), resources.end());
    allowed = contest_.next_allowed(resources, now);
    for (const Resource& r : resources) {
      auto it = failure_streak_.find(r);
      if (it != failure_streak_.end()) allowed = std::max(allowed, last_failure_at_ + backoff(it->second));
    }
  }
  if (allowed > now + 1e-9) {
    merge_scope(pending_, scope);
    pending_any_ = true;
    if (retry_at_ < 0) {
      log(out, LogLevel::kNotice, fmt::format("backing off {:.0f} ms before repairing {} again",
                                              (allowed - now) * 1000, joined(resource_names(resources), 3)));
    }
    arm_retry(allowed, out);
    return;
  }
  if (++immediate_rounds_ > kMaxImmediateRounds) {
    // Changes needed again right after they were applied: something undoes them at once,
    // or the kernel keeps them in a form arpguard does not recognise. Read everything
    // again, and wait longer each time it goes on.
    immediate_rounds_ = 0;
    ++churn_streak_;
    merge_scope(pending_, scope);
    pending_any_ = true;
    if (churn_streak_ == 1 || now - churn_logged_at_ >= kFailureLogSeconds) {
      log(out, LogLevel::kWarning,
          fmt::format("changes keep being needed right after being applied ({}): reading the kernel again in {:.1f} s",
                      joined(plan.lines(kLinesLogged), 2), backoff(churn_streak_)));
      churn_logged_at_ = now;
    }
    arm_retry(now + backoff(churn_streak_), out);
    need_observe_ = true;
    return;
  }
  converged_ = false;
  in_flight_scope_ = scope;
  in_flight_repair_ = foreign_changes_ > 0;
  in_flight_ = std::move(plan);
  applying_ = true;
  out.emplace_back(command::Apply{*in_flight_});
}

void Supervisor::forget_failures_not_in(const Plan& plan, const DiffScope& scope, Out& out) {
  // A resource whose repair failed but that no longer needs one (someone else fixed it,
  // or the policy dropped it) is not failing any more.
  if (failing_.empty()) return;
  std::set<Resource> needed;
  for (const Action& action : plan.actions) needed.insert(resource_of(action));
  for (auto it = failing_.begin(); it != failing_.end();) {
    const Resource& r = it->first;
    bool covered = scope.everything || (scope.host && r.kind != Resource::Kind::kVip);
    if (!covered && r.kind == Resource::Kind::kVip) {
      if (auto prefix = IpPrefix::parse(r.name)) {
        covered = std::any_of(scope.regions.begin(), scope.regions.end(),
                              [&](const IpRange& region) { return region.overlaps(IpRange::of(*prefix)); });
      }
    }
    if (!covered || needed.count(r)) {
      ++it;
      continue;
    }
    log(out, LogLevel::kNotice, fmt::format("{} no longer needs a repair", r.str()));
    failure_streak_.erase(r);
    failure_logged_at_.erase(r);
    it = failing_.erase(it);
  }
}

std::vector<std::string> Supervisor::problems() const {
  std::vector<std::string> out;
  for (const auto& [resource, why] : failing_) out.push_back(fmt::format("cannot repair {}: {}", resource.str(), why));
  return out;
}

void Supervisor::on_applied(const ApplyOutcome& outcome, double now, Out& out) {
  applying_ = false;
  if (!in_flight_) return;
  const Plan plan = std::move(*in_flight_);
  in_flight_.reset();
  const bool repair = in_flight_repair_ && phase_ == Phase::kRunning;
  const std::string cause = causes_.empty() ? std::string("drift") : joined(causes_, kCausesShown);

  // Typed outcomes: what succeeded is done; what failed is reported, retried, and never counted as done.
  // What succeeded is named only where it counts: for a repair (contests) or
  // when something has been failing.
  const bool name_successes = repair || !failing_.empty() || !failure_streak_.empty();
  std::map<Resource, std::string> failed;
  std::vector<Resource> succeeded;
  std::vector<size_t> done_indices;
  for (size_t i = 0; i < plan.actions.size() && i < outcome.results.size(); ++i) {
    // Held back until its suppression is verified: not done, not failed; the next round tries again.
    if (i < outcome.skipped.size() && outcome.skipped[i]) continue;
    if (outcome.results[i].ok()) {
      if (name_successes) succeeded.push_back(resource_of(plan.actions[i]));
      done_indices.push_back(i);
    } else {
      failed.try_emplace(resource_of(plan.actions[i]), outcome.results[i].message());
    }
  }
  // Usually everything was done: the plan itself, not a copy of its actions.
  Plan partial;
  if (done_indices.size() != plan.actions.size()) {
    for (size_t i : done_indices) partial.actions.push_back(plan.actions[i]);
  }
  const Plan& done = done_indices.size() == plan.actions.size() ? plan : partial;
  // An nft object the cache holds that the kernel says is not there: the
  // cache is wrong, and retrying what it planned fails for ever. nftables
  // frees an owner table with its owner's socket and sends no notification.
  // Everything is read again, and the next plan starts from the kernel.
  for (size_t i = 0; i < plan.actions.size() && i < outcome.results.size(); ++i) {
    const Status& result = outcome.results[i];
    if (!result.ok() && result.error().errno_value == ENOENT && std::holds_alternative<NftChange>(plan.actions[i])) {
      request_resync(out, fmt::format("{}: not in the kernel though arpguard's cache holds it: full resync",
                                      describe(plan.actions[i]))
                              .c_str());
      break;
    }
  }
  // Sysctls send no notification: what was written is what the cache holds, until the next poll says otherwise.
  for (const Action& action : done.actions) {
    if (const auto* set = std::get_if<SetSysctl>(&action)) cache_.sysctls[set->key] = set->to;
  }
  for (const Resource& r : succeeded) {
    if (failed.count(r)) continue;
    if (failing_.erase(r)) log(out, LogLevel::kNotice, fmt::format("{} repaired again", r.str()));
    failure_streak_.erase(r);
    failure_logged_at_.erase(r);
  }
  if (!done.empty()) {
    const std::vector<std::string> lines = done.lines(kLinesLogged);
    if (repair) {
      log(out, LogLevel::kNotice, fmt::format("repair after {}: {}", cause, fmt::join(lines, "; ")));
      ++repairs_total_;
      recent_repairs_.push_front({options_.unix_offset + now, cause, lines});
      if (recent_repairs_.size() > kRecentRepairsKept) recent_repairs_.pop_back();
      std::vector<Resource> unique = succeeded;
      std::sort(unique.begin(), unique.end());
      unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
      // One line for every resource that became contested now (a fight over
      // thousands of VIPs is one event, not thousands of lines).
      std::vector<std::string> contested;
      for (const Resource& r : unique) {
        if (contest_.record(r, now)) contested.push_back(r.str());
      }
      if (!contested.empty()) {
        log(out, LogLevel::kWarning,
            fmt::format("contested: {} undone again and again (more than {} repairs in {} ms); still repairing, "
                        "with backoff",
                        joined(contested, 3), policy_.agent.contested_repairs, policy_.agent.contested_window_ms));
      }
    } else {
      const char* what = phase_ == Phase::kStopping ? "stop" : (reloading_ ? "reload" : "apply");
      for (const std::string& line : lines) log(out, LogLevel::kNotice, fmt::format("{}: {}", what, line));
    }
    for (const Action& action : done.actions) {
      if (const auto* del = std::get_if<DelAddress>(&action); del && del->why == DelReason::kMisplaced) {
        log(out, LogLevel::kWarning,
            fmt::format("VIP {} was on {}, which may answer {} for it: removed there; it belongs on {}",
                        del->key.address.str(), del->device, del->key.address.family == Family::kV4 ? "ARP" : "NDP",
                        del->belongs_on));
      }
    }
  }
  for (const auto& [resource, why] : failed) {
    // Said once, and again at most once a minute while it goes on: a retry loop must not flood the log.
    auto previous = failing_.find(resource);
    const bool same = previous != failing_.end() && previous->second == why;
    const int streak = ++failure_streak_[resource];
    double& logged = failure_logged_at_[resource];
    if (!same || now - logged >= kFailureLogSeconds) {
      log(out, LogLevel::kError,
          same ? fmt::format("still cannot repair {} ({} attempts): {}", resource.str(), streak, why)
               : fmt::format("cannot repair {}: {}", resource.str(), why));
      logged = now;
    }
    failing_[resource] = why;
    ++repair_failures_total_;
  }
  if (!outcome.blocked.empty()) {
    std::vector<std::string> texts;
    for (const Reason& r : outcome.blocked) texts.push_back(r.text);
    const std::string text = fmt::format("VIPs not added, their suppression is not verified: {}", joined(texts, 3));
    if (text != last_blocked_) log(out, LogLevel::kWarning, text);
    last_blocked_ = text;
  } else {
    last_blocked_.clear();
  }
  if (outcome.state_error) {
    log(out, LogLevel::kError, fmt::format("cannot record state: {}", outcome.state_error->message()));
    record_error_ = outcome.state_error->message();
  } else if (!outcome.state.empty()) {
    // Written: the file holds it all again, an unreadable one kept aside.
    if (record_error_) log(out, LogLevel::kNotice, "the state record is written again");
    record_error_.reset();
    cache_.state_error.reset();
  }
  for (const ManagedVip& vip : outcome.state.added) {
    cache_.state.vips.insert(cache_.state.vips.end(), vip);  // added in order: each goes last
    cache_.managed_lengths.add(vip.prefix);
  }
  for (const ManagedVip& vip : outcome.state.removed) cache_.state.vips.erase(vip);
  for (const auto& [key, value] : outcome.state.origins) cache_.state.sysctl_origin.emplace(key, value);
  const bool complete = failed.empty() && outcome.blocked.empty();
  if (complete) {
    causes_.clear();  // the drift is repaired; what is still undone keeps its causes for the retry
    foreign_changes_ = 0;
  }
  // What the plan touched, once: at 100,000 VIPs a route and an element each.
  const std::vector<IpRange> touched = merge_ranges(regions_of(plan));
  readiness_dirty_.insert(readiness_dirty_.end(), in_flight_scope_.regions.begin(), in_flight_scope_.regions.end());
  readiness_dirty_.insert(readiness_dirty_.end(), touched.begin(), touched.end());
  if (in_flight_scope_.everything) readiness_all_dirty_ = true;

  if (!outcome.blocked.empty()) {
    // What held the VIPs back came in as events or sysctls meanwhile: diff again at once.
    merge_scope(pending_, in_flight_scope_);
    pending_any_ = true;
  }
  if (!failed.empty()) {
    last_failure_at_ = now;
    merge_scope(pending_, in_flight_scope_);
    pending_any_ = true;
    int streak = 1;
    for (const auto& [resource, why] : failed) streak = std::max(streak, failure_streak_[resource]);
    arm_retry(now + backoff(streak), out);
    for (uint64_t request : pending_reloads_) {
      out.emplace_back(command::ReplyReload{ReloadReply{request, true, false, {}, problems()}});
    }
    pending_reloads_.clear();
    first_round_done_ = true;
    reloading_ = false;
  }

  if (phase_ == Phase::kStopping) {
    continue_removal(now, out);
    return;
  }
  // Our own changes came back as events: diff what they touched, which proves them.
  if (failed.empty()) {
    merge_scope(pending_, DiffScope::of(touched, true));
    pending_any_ = true;
  }
  reconcile(now, out, /*follow_up=*/true);
  notify_ready_state(now, out);
}

void Supervisor::on_timer(TimerId id, double now, Out& out) {
  switch (id) {
    case TimerId::kDebounce:
      debounce_at_ = -1;
      reconcile(now, out);
      break;
    case TimerId::kRetry:
      retry_at_ = -1;
      if ((need_observe_ || !have_cache_) && !resync_in_flight_) {
        need_observe_ = false;
        resync_in_flight_ = true;
        out.emplace_back(command::ObserveAll{});
      } else {
        reconcile(now, out);
      }
      break;
    case TimerId::kSysctlPoll: {
      for (const Resource& calmed : contest_.expire(now)) {
        log(out, LogLevel::kNotice, fmt::format("no longer contested: {}", calmed.str()));
        readiness_all_dirty_ = true;
      }
      for (const IpPrefix& vip : watch_.expired(now)) readiness_dirty_.push_back(IpRange::of(vip));
      out.emplace_back(command::ReadSysctls{sysctl_scopes()});
      if (!desired_.vips.redirected.empty()) out.emplace_back(command::ReadConntrack{});
      out.emplace_back(command::ArmTimer{TimerId::kSysctlPoll, now + policy_.agent.sysctl_poll_ms / 1000.0});
      break;
    }
    case TimerId::kChecks: {
      command::RunChecks run;
      run.timeout = std::min(2.0, policy_.agent.check_interval_ms / 1000.0 * 0.8);
      for (const VipPolicy& vip : policy_.vips) {
        if (!vip.check_port) continue;
        // A redirected VIP is never local: REDIRECT delivers to the incoming
        // interface's own address, so the check asks there (the first
        // ARP-facing interface's real IPv4 address; loopback when there is none).
        IpAddress target = vip.prefix.address;
        if (vip.method == Method::kRedirect) {
          target = vip.prefix.family() == Family::kV4 ? *IpAddress::parse("127.0.0.1") : *IpAddress::parse("::1");
          if (vip.prefix.family() == Family::kV4) {
            for (const rules::ArpOutput& output : desired_.host.arp_outputs) {
              if (output.real_ip) {
                target = *output.real_ip;
                break;
              }
            }
          }
        }
        uint16_t port = vip.check_port;
        for (const PortMapping& mapping : vip.ports) {
          if (mapping.to && port >= mapping.first && port <= mapping.last) port = *mapping.to;
        }
        run.targets.push_back({vip.prefix, target, port});
      }
      if (!run.targets.empty()) {
        out.emplace_back(std::move(run));
        out.emplace_back(command::ArmTimer{TimerId::kChecks, now + policy_.agent.check_interval_ms / 1000.0});
      }
      break;
    }
    case TimerId::kAudit:
      if (!resync_in_flight_) {
        audit_in_flight_ = true;
        resync_in_flight_ = true;
        out.emplace_back(command::ObserveAll{});
      }
      out.emplace_back(command::ArmTimer{TimerId::kAudit, now + policy_.agent.audit_interval_ms / 1000.0});
      break;
    case TimerId::kExpire:
      break;
    case TimerId::kWatchSweep: {
      // Each VIP once per probe interval: the batch that keeps that pace.
      std::vector<ProbeRequest> candidates;
      for (const DesiredVip& vip : desired_.vips.bound) {
        for (const rules::ArpOutput& output : desired_.host.arp_outputs) {
          const Link* link = cache_.link_named(output.interface);
          if (link && link->up) candidates.push_back({link->index, vip.prefix.address});
        }
      }
      const double interval = policy_.watch.probe_interval_s;
      const double tick = sweep_tick(candidates.size(), interval);
      const auto batch = static_cast<size_t>(std::ceil(static_cast<double>(candidates.size()) * tick / interval));
      probe(watch_.sweep(candidates, batch, now), out);
      arm_sweep(now, out);
      break;
    }
  }
}

std::optional<IpPrefix> Supervisor::vip_holding(const IpAddress& address) const {
  if (const DesiredVip* vip = desired_.vips.bound_containing(address)) return vip->prefix;
  const auto& redirected = desired_.vips.redirected;
  auto it = std::upper_bound(redirected.begin(), redirected.end(), address,
                             [](const IpAddress& a, const IpPrefix& p) { return a < p.first(); });
  if (it != redirected.begin() && std::prev(it)->contains(address)) return *std::prev(it);
  return std::nullopt;
}

void Supervisor::arm_sweep(double now, Out& out) const {
  if (!policy_.watch.enabled || policy_.watch.probe_interval_s <= 0 || policy_.vips.empty()) return;
  out.emplace_back(command::ArmTimer{TimerId::kWatchSweep,
                                     now + sweep_tick(policy_.vips.size(), policy_.watch.probe_interval_s)});
}

void Supervisor::probe(const std::vector<ProbeRequest>& requests, Out& out) const {
  command::Probe probe;
  for (const ProbeRequest& request : requests) {
    const Link* link = cache_.link_at(request.ifindex);
    if (!link || !link->up || link->loopback || link->noarp) continue;
    command::ProbeTarget target{link->index, link->name, link->mac, std::nullopt, request.target};
    if (request.target.family == Family::kV4) {
      for (const rules::ArpOutput& output : desired_.host.arp_outputs) {
        if (output.interface == link->name) target.source_ip = output.real_ip;
      }
      if (!target.source_ip) continue;  // no IPv4 to ask from: an answer could not reach us
    }
    probe.targets.push_back(std::move(target));
  }
  if (!probe.targets.empty()) out.emplace_back(std::move(probe));
}

void Supervisor::analyse_flux(Out& out) {
  if (!flux_dirty_ || flux_in_flight_ || !have_cache_ || phase_ != Phase::kRunning) return;
  flux_dirty_ = false;
  std::vector<RouteQuery> queries = flux_queries(cache_, desired_.host.arp_facing, desired_.vips);
  if (queries.empty()) {
    on_routes({}, 0, out);
    return;
  }
  flux_in_flight_ = true;
  out.emplace_back(command::LookupRoutes{std::move(queries)});
}

void Supervisor::on_routes(RouteAnswers answers, double now, Out& out) {
  flux_in_flight_ = false;
  std::vector<AddressAnswer> fresh = arp_answers(cache_, desired_.host.arp_facing, desired_.vips, answers);
  std::set<std::string> before;
  for (const AddressAnswer& a : flux_) {
    if (!a.right()) before.insert(a.why);
  }
  std::set<std::string> after;
  flux_reasons_.clear();
  for (const AddressAnswer& a : fresh) {
    if (a.right()) continue;
    after.insert(a.why);
    flux_reasons_.push_back(warning(ReasonKind::kAddressUnanswered, a.why));
    if (!before.count(a.why)) log(out, LogLevel::kWarning, "ARP flux: " + a.why);
  }
  for (const std::string& why : before) {
    if (!after.count(why)) log(out, LogLevel::kNotice, "ARP flux resolved: no longer " + why);
  }
  flux_ = std::move(fresh);
  (void)now;
}

void Supervisor::on_wire(const input::Wire& wire, double now, Out& out) {
  if (wire.lost) {
    watch_.count_lost(1);
    if (now - lost_logged_at_ >= kFailureLogSeconds) {
      lost_logged_at_ = now;
      log(out, LogLevel::kWarning, "wire watch: frames were lost (socket overrun); claims may be missing from status");
    }
  }
  std::set<MacAddress> own_macs;
  for (const auto& [index, link] : cache_.links) {
    if (link.mac != MacAddress{}) own_macs.insert(link.mac);
  }
  std::set<IpPrefix> leaked_before;
  for (const WireFrame& frame : wire.frames) {
    if (auto vip = vip_holding(frame.vip); vip && watch_.leaked(*vip, now)) leaked_before.insert(*vip);
  }
  WireWatch::Seen seen = watch_.observe(wire.frames, own_macs, [&](const IpAddress& a) { return vip_holding(a); }, now);
  auto interface_name = [&](int index) {
    const Link* link = cache_.link_at(index);
    return link ? link->name : fmt::format("ifindex {}", index);
  };
  for (const Claim& claim : seen.new_claimants) {
    switch (claim.origin) {
      case ClaimOrigin::kThisHost: break;  // logged below, once per leak
      case ClaimOrigin::kDirector:
        log(out, LogLevel::kInfo,
            fmt::format("wire: VIP {} answered by the director, {} on {}{}", claim.vip.str(), claim.mac.str(),
                        interface_name(claim.ifindex),
                        watch_.learned_directors().count(claim.mac)
                            ? " (learned: the only MAC heard claiming VIPs; readiness.director_macs pins it)"
                            : ""));
        break;
      case ClaimOrigin::kOther:
        // A flood of forged claimants gets a few lines a minute, then a count.
        if (now - claim_log_window_ >= 60) {
          if (claim_logs_suppressed_ > 0) {
            log(out, LogLevel::kWarning,
                fmt::format("wire: {} more claimant(s) not logged in the last minute (see arpguard status)",
                            claim_logs_suppressed_));
          }
          claim_log_window_ = now;
          claim_logs_in_window_ = 0;
          claim_logs_suppressed_ = 0;
        }
        if (++claim_logs_in_window_ > kClaimLogsPerMinute) {
          ++claim_logs_suppressed_;
          break;
        }
        log(out, LogLevel::kWarning,
            fmt::format("wire: VIP {} claimed by another host, {} on {} ({}): clients may bypass the director",
                        claim.vip.str(), claim.mac.str(), interface_name(claim.ifindex), to_string(claim.last_kind)));
        break;
    }
  }
  if (!seen.ambiguous.empty()) {
    std::vector<std::string> macs;
    for (const MacAddress& mac : seen.ambiguous) macs.push_back(mac.str());
    log(out, LogLevel::kWarning,
        fmt::format("wire: {} claim VIPs and readiness.director_macs is not set: none is taken for the director "
                    "(set readiness.director_macs to the director's MAC)",
                    fmt::join(macs, " and ")));
  }
  for (const IpPrefix& vip : seen.leaked) {
    if (!leaked_before.insert(vip).second) continue;
    log(out, LogLevel::kError,
        fmt::format("wire: VIP {} revealed by this host: a frame claiming it was seen on the wire; checking "
                    "sysctls and tables now",
                    vip.str()));
  }
  if (!seen.leaked.empty()) {
    // A reset sysctl shows itself here before the next poll: read them now.
    out.emplace_back(command::ReadSysctls{sysctl_scopes()});
  }
  for (const IpPrefix& vip : seen.changed) readiness_dirty_.push_back(IpRange::of(vip));
  probe(seen.probes, out);
  if (!seen.changed.empty()) notify_ready_state(now, out);
}

void Supervisor::on_check(const input::CheckDone& done, double now, Out& out) {
  auto it = checks_.find(done.vip);
  const bool changed = it == checks_.end() || it->second.ok != done.result.ok;
  checks_[done.vip] = done.result;
  if (!changed) return;
  const VipPolicy* vip = policy_.vip_containing(done.vip.address);
  if (done.result.ok) {
    log(out, LogLevel::kNotice,
        fmt::format("service check on {} tcp:{} passes", done.vip.address.str(), vip ? vip->check_port : 0));
  } else {
    log(out, LogLevel::kWarning, fmt::format("service check on {} failed: {}", done.vip.address.str(), done.result.detail));
  }
  readiness_dirty_.push_back(IpRange::of(done.vip));
  notify_ready_state(now, out);
}

// ---- reload and stop ----

void Supervisor::on_reload(input::Reload in, double now, Out& out) {
  out.emplace_back(command::Notify{"RELOADING=1"});
  PolicyResult& result = in.policy;
  if (result.policy && have_cache_) {
    for (Diagnostic& d : check_against_kernel(*result.policy, cache_)) result.errors.push_back(std::move(d));
  }
  if (!result.errors.empty() || !result.policy) {
    ReloadReply reply{in.request, false, false, {}, {}};
    for (const Diagnostic& d : result.errors) {
      log(out, LogLevel::kError, d.str());
      reply.errors.push_back(d.str());
    }
    log(out, LogLevel::kError, fmt::format("reload of {} rejected: the running policy stays in force", policy_.file));
    out.emplace_back(command::ReplyReload{std::move(reply)});
    out.emplace_back(command::Notify{"READY=1"});
    return;
  }
  for (const Diagnostic& d : result.warnings) log(out, LogLevel::kWarning, d.str());
  Policy next = std::move(*result.policy);
  if (next.agent.state_dir != policy_.agent.state_dir) {
    log(out, LogLevel::kWarning, "agent.state_dir changes take effect at the next start");
    next.agent.state_dir = policy_.agent.state_dir;
  }
  if (next.agent.control_socket != policy_.agent.control_socket ||
      next.readiness.listen.size() != policy_.readiness.listen.size() ||
      next.readiness.agent_check_listen.size() != policy_.readiness.agent_check_listen.size()) {
    log(out, LogLevel::kWarning, "changes to the control socket and readiness listeners take effect at the next start");
    next.agent.control_socket = policy_.agent.control_socket;
    next.readiness.listen = policy_.readiness.listen;
    next.readiness.agent_check_listen = policy_.readiness.agent_check_listen;
  }
  policy_ = std::move(next);
  contest_ = RepairTracker(policy_.agent.contested_repairs, policy_.agent.contested_window_ms / 1000.0);
  checks_.clear();
  failing_.clear();
  failure_streak_.clear();
  set_desired_vips(make_desired_vips(policy_));
  rebuild_desired_host();
  log(out, LogLevel::kInfo,
      fmt::format("reloaded {}: {} VIP(s), method {}", policy_.file, policy_.vips.size(), to_string(policy_.arp.method)));
  pending_ = DiffScope::all();
  pending_any_ = true;
  readiness_all_dirty_ = true;
  reloading_ = true;
  converged_ = false;
  if (in.request) pending_reloads_.push_back(in.request);
  out.emplace_back(command::ArmTimer{TimerId::kSysctlPoll, now + policy_.agent.sysctl_poll_ms / 1000.0});
  if (policy_.agent.audit_interval_ms > 0) {
    out.emplace_back(command::ArmTimer{TimerId::kAudit, now + policy_.agent.audit_interval_ms / 1000.0});
  }
  const bool checks = std::any_of(policy_.vips.begin(), policy_.vips.end(), [](const VipPolicy& v) { return v.check_port; });
  out.emplace_back(checks ? Command{command::ArmTimer{TimerId::kChecks, now}} : Command{command::CancelTimer{TimerId::kChecks}});
  if (applying_) return;  // the apply under way is followed by a diff of everything
  reconcile(now, out);
  out.emplace_back(command::Notify{"READY=1"});
}

void Supervisor::on_stop(double now, Out& out) {
  out.emplace_back(command::Notify{"STOPPING=1"});
  if (policy_.agent.on_stop == OnStop::kKeep || !have_cache_) {
    log(out, LogLevel::kInfo, "stopping; on_stop = \"keep\": VIPs and their protection stay in place");
    phase_ = Phase::kStopped;
    out.emplace_back(command::Exit{0});
    return;
  }
  log(out, LogLevel::kInfo, "stopping; on_stop = \"remove\": removing VIPs, then their protection");
  phase_ = Phase::kStopping;
  removal_steps_ = 0;
  if (!applying_) continue_removal(now, out);
}

void Supervisor::continue_removal(double, Out& out) {
  if (removal_steps_++ >= kRemovalSteps) {
    log(out, LogLevel::kError, "stop: arpguard could not be removed completely; what is left stays in place");
    phase_ = Phase::kStopped;
    out.emplace_back(command::Exit{0});
    return;
  }
  Plan plan = plan_removal(desired_, cache_);
  if (plan.empty()) {
    bool kept = false;
    for (const auto& [id, table] : cache_.tables) {
      kept = true;
      log(out, LogLevel::kWarning,
          fmt::format("stop: nft table {} kept: it still guards an address configured here", id.str()));
    }
    if (!kept) out.emplace_back(command::Log{LogLevel::kInfo, "stop: arpguard removed; sysctls restored"});
    out.emplace_back(command::ForgetState{});
    phase_ = Phase::kStopped;
    out.emplace_back(command::Exit{0});
    return;
  }
  in_flight_scope_ = DiffScope::all();
  in_flight_repair_ = false;
  in_flight_ = std::move(plan);
  applying_ = true;
  out.emplace_back(command::Apply{*in_flight_});
}

// ---- readiness ----

std::vector<std::string> Supervisor::sysctl_scopes() const {
  std::vector<std::string> scopes{"all", "default"};
  scopes.insert(scopes.end(), desired_.host.arp_facing.begin(), desired_.host.arp_facing.end());
  return scopes;
}

bool Supervisor::fresh(double now) const {
  const double bound = policy_.agent.sysctl_poll_ms / 1000.0 + kFreshnessSlack;
  return have_cache_ && !resync_in_flight_ && !sysctl_error_ && sysctls_read_at_ >= 0 && now - sysctls_read_at_ <= bound;
}

ReadinessInputs Supervisor::readiness_inputs(double now) const {
  ReadinessInputs in;
  in.draining = draining_;
  in.fresh = fresh(now);
  in.observe_error = observe_error_ ? observe_error_ : sysctl_error_;
  in.contested = &contested_cache_;
  in.failing = &failing_;
  in.checks = &checks_;
  in.conntrack = conntrack_;
  in.conntrack_warn_percent = policy_.readiness.conntrack_warn_percent;
  in.watch = &watch_;
  in.now = now;
  in.flux = &flux_reasons_;
  return in;
}

void Supervisor::refresh_readiness(double now) {
  contested_cache_ = contest_.contested();
  const ReadinessInputs in = readiness_inputs(now);
  auto assess_bound = [&](size_t i) {
    const bool ready = have_cache_ && all_warnings(vip_reasons(desired_, cache_, in, desired_.vips.bound[i]));
    if (ready) {
      not_ready_bound_.erase(i);
    } else {
      not_ready_bound_.insert(i);
    }
  };
  auto assess_redirect = [&](size_t i) {
    const bool ready = have_cache_ && all_warnings(redirect_reasons(desired_, cache_, in, desired_.vips.redirected[i]));
    if (ready) {
      not_ready_redirect_.erase(i);
    } else {
      not_ready_redirect_.insert(i);
    }
  };
  // Failing and contested VIPs change without a region: look at those that were or are (few).
  const std::vector<IpPrefix> failing = vip_prefixes(failing_);
  const std::vector<IpPrefix> contested = vip_prefixes(contested_cache_);
  for (const std::vector<IpPrefix>* list : {&failing, &contested, &std::as_const(tracked_failing_), &std::as_const(tracked_contested_)}) {
    for (const IpPrefix& prefix : *list) readiness_dirty_.push_back(IpRange::of(prefix));
  }
  if (readiness_all_dirty_) {
    not_ready_bound_.clear();
    not_ready_redirect_.clear();
    for (size_t i = 0; i < desired_.vips.bound.size(); ++i) assess_bound(i);
    for (size_t i = 0; i < desired_.vips.redirected.size(); ++i) assess_redirect(i);
  } else {
    for (const IpRange& region : merge_ranges(std::move(readiness_dirty_))) {
      const auto& bound = desired_.vips.bound;
      auto it = std::upper_bound(bound.begin(), bound.end(), region.first,
                                 [](const IpAddress& a, const DesiredVip& v) { return a < v.prefix.first(); });
      if (it != bound.begin() && std::prev(it)->prefix.contains(region.first)) --it;
      for (; it != bound.end() && it->prefix.first() <= region.last; ++it) assess_bound(static_cast<size_t>(it - bound.begin()));
      const auto& redirected = desired_.vips.redirected;
      auto rt = std::upper_bound(redirected.begin(), redirected.end(), region.first,
                                 [](const IpAddress& a, const IpPrefix& p) { return a < p.first(); });
      if (rt != redirected.begin() && std::prev(rt)->contains(region.first)) --rt;
      for (; rt != redirected.end() && rt->first() <= region.last; ++rt) {
        assess_redirect(static_cast<size_t>(rt - redirected.begin()));
      }
    }
  }
  readiness_dirty_.clear();
  readiness_all_dirty_ = false;
  tracked_failing_ = failing;
  tracked_contested_ = contested;
}

ReadySummary Supervisor::ready_summary(double now) {
  refresh_readiness(now);
  ReadySummary summary;
  const ReadinessInputs in = readiness_inputs(now);
  std::vector<Reason> server = have_cache_ ? server_reasons(desired_, cache_, in)
                                           : std::vector<Reason>{not_ready(ReasonKind::kStale, "kernel state not read yet")};
  if (!have_cache_ && observe_error_) {
    server.push_back(not_ready(ReasonKind::kObserveFailed, "cannot read kernel state: " + *observe_error_));
  }
  for (Reason& r : server) {
    if (r.severity == Severity::kNotReady) summary.reasons.push_back(std::move(r));
  }
  for (size_t i : not_ready_bound_) {
    if (summary.reasons.size() >= kReasonsSummarised) break;
    for (Reason& r : vip_reasons(desired_, cache_, in, desired_.vips.bound[i])) {
      if (r.severity == Severity::kNotReady) summary.reasons.push_back(std::move(r));
    }
  }
  for (size_t i : not_ready_redirect_) {
    if (summary.reasons.size() >= kReasonsSummarised) break;
    for (Reason& r : redirect_reasons(desired_, cache_, in, desired_.vips.redirected[i])) {
      if (r.severity == Severity::kNotReady) summary.reasons.push_back(std::move(r));
    }
  }
  const size_t unready = not_ready_bound_.size() + not_ready_redirect_.size();
  if (summary.reasons.size() >= kReasonsSummarised && unready > 0) {
    summary.reasons.push_back(not_ready(ReasonKind::kVipMissing, fmt::format("{} VIP(s) not ready in all", unready)));
  }
  if (summary.reasons.empty() && unready > 0) {
    summary.reasons.push_back(not_ready(ReasonKind::kVipMissing, fmt::format("{} VIP(s) not ready", unready)));
  }
  summary.ready = summary.reasons.empty();
  summary.only_draining = !summary.ready && std::all_of(summary.reasons.begin(), summary.reasons.end(),
                                                        [](const Reason& r) { return r.kind == ReasonKind::kDraining; });
  return summary;
}

std::optional<VipStatus> Supervisor::vip_status(const IpAddress& address, double now) {
  refresh_readiness(now);
  const ReadinessInputs in = readiness_inputs(now);
  VipStatus status;
  std::vector<Reason> reasons;
  if (const DesiredVip* vip = desired_.vips.bound_containing(address)) {
    status = {vip->prefix.str(), vip->device, std::string(to_string(vip->kind)), std::string(to_string(vip->method)),
              false, false, {}, std::nullopt};
    reasons = vip_reasons(desired_, cache_, in, *vip);
    status.present = std::none_of(reasons.begin(), reasons.end(), [](const Reason& r) {
      return r.kind == ReasonKind::kVipMissing || r.kind == ReasonKind::kVipDeviceMissing;
    });
  } else if (desired_.vips.is_redirected(address)) {
    auto it = std::upper_bound(desired_.vips.redirected.begin(), desired_.vips.redirected.end(), address,
                               [](const IpAddress& a, const IpPrefix& p) { return a < p.first(); });
    const IpPrefix prefix = *std::prev(it);
    status = {prefix.str(), "", "redirect", "redirect", false, false, {}, std::nullopt};
    reasons = redirect_reasons(desired_, cache_, in, prefix);
    status.present = std::none_of(reasons.begin(), reasons.end(), [](const Reason& r) { return r.kind == ReasonKind::kVipNotSuppressed; });
  } else {
    return std::nullopt;
  }
  if (auto it = checks_.find(*IpPrefix::parse(status.vip)); it != checks_.end()) status.check_ok = it->second.ok;
  // The server's own reasons hold for every VIP.
  std::vector<Reason> all;
  if (have_cache_) {
    for (Reason& r : server_reasons(desired_, cache_, in)) {
      if (r.severity == Severity::kNotReady) all.push_back(std::move(r));
    }
  } else {
    all.push_back(not_ready(ReasonKind::kStale, "kernel state not read yet"));
  }
  for (Reason& r : reasons) all.push_back(std::move(r));
  status.reasons = std::move(all);
  status.ready = all_warnings(status.reasons);
  return status;
}

void Supervisor::notify_ready_state(double now, Out& out) {
  if (phase_ != Phase::kRunning || !first_round_done_) return;
  const ReadySummary summary = ready_summary(now);
  const std::string status = summary.ready ? fmt::format("guarding {} VIP(s), method {}", policy_.vips.size(),
                                                         to_string(policy_.arp.method))
                             : summary.only_draining ? std::string("draining")
                                                     : "not ready: " + summary.reasons.front().text;
  if (!ready_notified_) {
    ready_notified_ = true;
    last_status_ = status;
    out.emplace_back(command::Notify{"READY=1\nSTATUS=" + status});
    if (summary.ready || summary.only_draining) {
      log(out, LogLevel::kInfo, "ready: " + status);
    } else {
      log(out, LogLevel::kWarning, "started, " + status);
    }
    return;
  }
  if (status != last_status_) {
    // The journal says when a server that was not ready becomes ready.
    if (summary.ready && last_status_.rfind("guarding ", 0) != 0) log(out, LogLevel::kInfo, "ready: " + status);
    last_status_ = status;
    out.emplace_back(command::Notify{"STATUS=" + status});
  }
}

std::map<IpPrefix, std::vector<Reason>> Supervisor::gaps_before_adding(const std::vector<IpPrefix>& vips) const {
  std::map<IpPrefix, std::vector<Reason>> gaps = arpguard::gaps_before_adding(desired_, cache_, vips);
  if (!sysctl_error_) return gaps;
  // Sysctls that could not be read just now are not verified: a VIP that relies on them waits (I1).
  for (const IpPrefix& prefix : vips) {
    const DesiredVip* vip = desired_.vips.bound_containing(prefix.address);
    if (!vip || prefix.family() != Family::kV4 || !uses_sysctls(vip->method)) continue;
    gaps[prefix].push_back(not_ready(ReasonKind::kObserveFailed, "cannot read sysctls: " + *sysctl_error_));
  }
  return gaps;
}

StatusSnapshot Supervisor::snapshot(double now, bool all_vips, bool orphans) {
  const ReadySummary summary = ready_summary(now);
  const ReadinessInputs in = readiness_inputs(now);
  StatusSnapshot s;
  s.version = ARPGUARD_VERSION;
  s.policy = policy_.file;
  s.method = std::string(to_string(policy_.arp.method));
  s.ready = summary.ready;
  s.draining = draining_;
  if (have_cache_) {
    s.reasons = server_reasons(desired_, cache_, in);
  } else {
    s.reasons.push_back(not_ready(ReasonKind::kStale, "kernel state not read yet"));
  }
  // Protection does not hang on the record, an operator's next restart does.
  if (record_error_) {
    s.reasons.push_back(warning(ReasonKind::kStateUnrecorded,
                                fmt::format("the state record cannot be written ({}): what arpguard changed since "
                                            "(VIPs it added or removed, sysctl values before it) is not on disk",
                                            *record_error_)));
  } else if (have_cache_ && cache_.state_error) {
    s.reasons.push_back(warning(ReasonKind::kStateUnrecorded,
                                fmt::format("the state record cannot be read ({}): arpguard keeps whatever it finds "
                                            "configured",
                                            *cache_.state_error)));
  }
  s.state_age_seconds = sysctls_read_at_ < 0 ? now : now - sysctls_read_at_;
  s.now = options_.unix_offset + now;
  s.uptime_seconds = s.now - options_.started;
  s.vips_total = desired_.vips.bound.size() + desired_.vips.redirected.size();
  // A VIP is ready only while the server is: server-wide reasons hold for all of them.
  const bool server_ok = std::none_of(s.reasons.begin(), s.reasons.end(),
                                      [](const Reason& r) { return r.severity == Severity::kNotReady; });
  s.vips_ready = server_ok ? s.vips_total - not_ready_bound_.size() - not_ready_redirect_.size() : 0;
  s.metrics_vip_limit = policy_.readiness.metrics_vip_limit;

  // Which VIPs to list: all of them when asked or when few; else the not-ready ones first.
  const bool list_all = all_vips || s.vips_total <= static_cast<uint64_t>(policy_.readiness.metrics_vip_limit);
  auto bound_status = [&](size_t i) {
    const DesiredVip& vip = desired_.vips.bound[i];
    VipStatus v{vip.prefix.str(), vip.device, std::string(to_string(vip.kind)), std::string(to_string(vip.method)),
                true, false, vip_reasons(desired_, cache_, in, vip), std::nullopt};
    v.present = std::none_of(v.reasons.begin(), v.reasons.end(), [](const Reason& r) {
      return r.kind == ReasonKind::kVipMissing || r.kind == ReasonKind::kVipDeviceMissing;
    });
    v.ready = have_cache_ && all_warnings(v.reasons) && server_ok;
    if (auto it = checks_.find(vip.prefix); it != checks_.end()) v.check_ok = it->second.ok;
    return v;
  };
  auto redirect_status = [&](size_t i) {
    const IpPrefix& prefix = desired_.vips.redirected[i];
    VipStatus v{prefix.str(), "", "redirect", "redirect", true, false, redirect_reasons(desired_, cache_, in, prefix),
                std::nullopt};
    v.present = std::none_of(v.reasons.begin(), v.reasons.end(), [](const Reason& r) { return r.kind == ReasonKind::kVipNotSuppressed; });
    v.ready = have_cache_ && all_warnings(v.reasons) && server_ok;
    if (auto it = checks_.find(prefix); it != checks_.end()) v.check_ok = it->second.ok;
    return v;
  };
  if (list_all) {
    for (size_t i = 0; i < desired_.vips.bound.size(); ++i) s.vips.push_back(bound_status(i));
    for (size_t i = 0; i < desired_.vips.redirected.size(); ++i) s.vips.push_back(redirect_status(i));
  } else {
    s.vips_complete = false;
    for (size_t i : not_ready_bound_) {
      if (s.vips.size() >= kNotReadyVipsShown) break;
      s.vips.push_back(bound_status(i));
    }
    for (size_t i : not_ready_redirect_) {
      if (s.vips.size() >= kNotReadyVipsShown) break;
      s.vips.push_back(redirect_status(i));
    }
  }
  for (const VipStatus& v : s.vips) {
    for (const Reason& r : v.reasons) {
      if (s.reasons.size() >= kReasonsSummarised + 5) break;
      if (r.severity == Severity::kNotReady && std::find(s.reasons.begin(), s.reasons.end(), r) == s.reasons.end()) {
        s.reasons.push_back(r);
      }
    }
  }

  const nft::TableSpec* arp_table = desired_.host.table(rules::arp_table_id());
  for (const std::string& name : desired_.host.arp_facing) {
    InterfaceStatus i{name, effective_sysctl(cache_.sysctls, name, kArpIgnore),
                      effective_sysctl(cache_.sysctls, name, kArpAnnounce),
                      effective_sysctl(cache_.sysctls, name, kArpFilter), ""};
    if (arp_table) {
      for (const nft::RuleSpec& rule : arp_table->rules) {
        if (rule.interface == name && rule.role == nft::RuleRole::kArpRewriteSender) {
          i.real_ip = rule.text.substr(rule.text.rfind(' ') + 1);
        }
      }
    }
    s.interfaces.push_back(std::move(i));
  }
  if (have_cache_ && orphans) {
    for (Reason& r : orphan_reasons(desired_, cache_)) s.reasons.push_back(std::move(r));
  }
  for (const AddressAnswer& a : flux_) {
    s.addresses.push_back({a.key.address.str(), a.device, a.answered_by, a.why});
  }
  for (const nft::TableId& id : arpguard_tables()) {
    const ObservedTable* table = cache_.table(id);
    const nft::TableSpec reference = desired_.host.reference_table(id);
    const nft::TableSpec* spec = &reference;
    if (!table && !desired_.host.table(id)) continue;
    TableStatus t{id.str(), table != nullptr, table && cache_.table_is_ours(*table), 0};
    if (table) {
      for (const auto& [name, set] : table->sets) t.elements += set.size();
      for (const auto& [handle, rule] : table->rules) {
        RuleStatus r{id.str(), rule.chain, "foreign", "", "a rule arpguard did not write", rule.packets};
        if (spec) {
          for (const nft::RuleSpec& want : spec->rules) {
            if (want.same_as(rule.chain, rule.exprs)) {
              r.role = std::string(nft::to_string(want.role));
              r.interface = want.interface;
              r.text = want.text;
              const std::string zero = "counter packets 0 bytes 0";
              if (auto at = r.text.find(zero); at != std::string::npos) {
                r.text.replace(at, zero.size(), fmt::format("counter packets {} bytes {}", rule.packets, rule.bytes));
              }
            }
          }
        }
        s.rules.push_back(std::move(r));
      }
    }
    s.tables.push_back(std::move(t));
  }
  s.repairs_total = repairs_total_;
  s.repair_failures_total = repair_failures_total_;
  s.cache_divergence_total = divergence_total_;
  s.audits_total = audits_total_;
  s.audits_inconclusive_total = audits_inconclusive_;
  s.recent_repairs.assign(recent_repairs_.begin(), recent_repairs_.end());
  for (const auto& [resource, repairs] : contest_.contested()) s.contested.push_back({resource.str(), repairs});
  if (!desired_.vips.redirected.empty()) s.conntrack = conntrack_.value_or(ConntrackFill{});
  for (const auto& [key, claim] : watch_.claims()) {
    s.claims.push_back({claim.vip.str(), claim.mac.str(), std::string(to_string(claim.origin)), claim.frames,
                        claim.last_seen + options_.unix_offset});
  }
  for (const MacAddress& mac : watch_.learned_directors()) s.learned_directors.push_back(mac.str());
  s.watch_probes_total = watch_.probes_sent();
  s.watch_frames_total = watch_.frames_total();
  return s;
}

}  // namespace arpguard
