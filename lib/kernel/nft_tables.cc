#include "kernel/nft_tables.h"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_arp.h>
#include <endian.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <random>

#include "kernel/make_dirs.h"
#include "kernel/netlink_send.h"
#include "kernel/nft_codec.h"
#include "kernel/recv_buffer.h"

namespace arpguard {

namespace {

constexpr size_t kReceiveBuffer = 256 * 1024;
constexpr int kSocketBuffer = 8 << 20;
// Reads of the tables that a commit to one of them spoiled, in a row, before observe() gives up.
constexpr int kObserveAttempts = 5;

using Callback = std::function<void(const nlmsghdr*)>;

int run_callback(const nlmsghdr* nlh, void* data) {
  (*static_cast<Callback*>(data))(nlh);
  return MNL_CB_OK;
}

}  // namespace

// nftables notifications heard while arpguard reads its tables. The
// ruleset's generation changes with a commit to any table (a firewall, a
// kube-proxy): only a commit to one of arpguard's spoils the read. Subscribed
// for the read alone, so the kernel makes no notifications for arpguard's own
// big commits when nobody else listens.
class CommitWatch {
 public:
  /// Opened once and kept: closing an nfnetlink socket makes the kernel wait,
  /// under the commit mutex, for the last commit's objects to be freed after
  /// an RCU grace period (10 to 15 ms here), at every read.
  static std::unique_ptr<CommitWatch> open() {
    mnl_socket* sock = mnl_socket_open(NETLINK_NETFILTER);
    if (!sock) return nullptr;
    std::unique_ptr<CommitWatch> watch(new CommitWatch(sock));
    if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) return nullptr;
    const int fd = mnl_socket_get_fd(sock);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kSocketBuffer, sizeof(kSocketBuffer)) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof(kSocketBuffer));
    }
    return watch;
  }
  ~CommitWatch() { mnl_socket_close(sock_); }
  CommitWatch(const CommitWatch&) = delete;
  CommitWatch& operator=(const CommitWatch&) = delete;

  /// Listens to nftables notifications for the length of one read; between
  /// reads nothing is queued. False when the kernel refused.
  bool listen(bool on) {
    int group = NFNLGRP_NFTABLES;
    const int option = on ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP;
    return mnl_socket_setsockopt(sock_, option, &group, sizeof(group)) == 0;
  }

  /// Drops what was notified so far.
  void discard() {
    while (::recv(mnl_socket_get_fd(sock_), buffer_.data(), buffer_.size(), MSG_DONTWAIT) > 0 || errno == ENOBUFS) {
    }
  }

  /// Whether every commit up to the one that made `generation` left `tables`
  /// alone: reads notifications until that commit's NEWGEN. False when one
  /// was about them, when some were lost, or when they do not come in time.
  bool left_alone(uint32_t generation, const std::vector<nft::TableId>& tables) {
    const int fd = mnl_socket_get_fd(sock_);
    bool touched = false;
    bool reached = false;
    Callback on_message = [&](const nlmsghdr* nlh) {
      if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFT_MSG_NEWGEN) {
        const std::optional<uint32_t> id = nftcodec::generation_of(nlh);
        if (id && static_cast<int32_t>(*id - generation) >= 0) reached = true;
        return;
      }
      if (nftcodec::decode(nlh, tables)) touched = true;
    };
    while (!reached && !touched) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, kNotificationWaitMs) <= 0) return false;
      const ssize_t n = ::recv(fd, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return false;  // ENOBUFS: some were lost
      }
      mnl_cb_run(buffer_.data(), static_cast<size_t>(n), 0, 0, run_callback, &on_message);
    }
    return !touched;
  }

 private:
  explicit CommitWatch(mnl_socket* sock) : sock_(sock), buffer_(kReceiveBuffer) {}
  static constexpr int kNotificationWaitMs = 200;
  mnl_socket* sock_;
  RecvBuffer buffer_;  ///< one for every read of the watch
};


namespace {

// What the features file says for this boot: "nft_table_persist=0|1 boot=<boot_id>".
std::string features_line(bool persist, const std::string& boot) {
  return fmt::format("nft_table_persist={} boot={}\n", persist ? 1 : 0, boot);
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.size() == 36 ? id : std::string();  // a UUID, else unknown: nothing is kept
}

// The kept answer, when the file holds exactly one of this boot's lines.
std::optional<bool> read_features(const std::string& path, const std::string& boot) {
  if (path.empty() || boot.empty()) return std::nullopt;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  char buffer[128];
  const ssize_t n = ::read(fd, buffer, sizeof(buffer));
  ::close(fd);
  if (n <= 0) return std::nullopt;
  const std::string text(buffer, static_cast<size_t>(n));
  if (text == features_line(true, boot)) return true;
  if (text == features_line(false, boot)) return false;
  return std::nullopt;  // another boot's, or not arpguard's writing: probed again
}

// Best effort: a directory that cannot be written only means probing again.
void write_features(const std::string& path, const std::string& boot, bool persist) {
  if (path.empty() || boot.empty()) return;
  const std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && !make_dirs(dir)) return;
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return;
  const std::string line = features_line(persist, boot);
  const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  if (::close(fd) != 0 || !written || ::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
}

}  // namespace

Result<std::unique_ptr<NftTables>> NftTables::open(std::string features_file, bool remember_elements) {
  mnl_socket* sock = mnl_socket_open(NETLINK_NETFILTER);
  if (!sock) return Error{"open nfnetlink socket", errno};
  if (mnl_socket_bind(sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int saved = errno;
    mnl_socket_close(sock);
    return Error{"bind nfnetlink socket", saved};
  }
  int one = 1;
  // Errors echo only the header, not a whole element message; and say why.
  mnl_socket_setsockopt(sock, NETLINK_CAP_ACK, &one, sizeof(one));
  mnl_socket_setsockopt(sock, NETLINK_EXT_ACK, &one, sizeof(one));
  const int fd = mnl_socket_get_fd(sock);
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kSocketBuffer, sizeof(kSocketBuffer)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kSocketBuffer, sizeof(kSocketBuffer));
  }
  return std::unique_ptr<NftTables>(
      new NftTables(sock, mnl_socket_get_portid(sock), std::move(features_file), remember_elements));
}

NftTables::NftTables(mnl_socket* sock, uint32_t portid, std::string features_file, bool remember_elements)
    : sock_(sock), portid_(portid), features_file_(std::move(features_file)), remember_elements_(remember_elements) {}

NftTables::~NftTables() { mnl_socket_close(sock_); }

Result<std::vector<NftTables::BatchError>> NftTables::send(const std::vector<iovec>& iov) {
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  // A batch must fit the socket's send buffer whole.
  const int fd = mnl_socket_get_fd(sock_);
  const int sndbuf = static_cast<int>(total + 4096);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  }
  if (send_to_kernel(fd, iov) < 0) return Error{fmt::format("send nft batch ({} bytes)", total), errno};

  // nfnetlink handles a batch inside sendmsg(): every ack is queued by now.
  std::vector<BatchError> errors;
  RecvBuffer buffer(kReceiveBuffer);
  for (;;) {
    const ssize_t n = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      return Error{"receive nft batch acks", errno};
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_type != NLMSG_ERROR) continue;
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      if (err->error != 0) errors.push_back({nlh->nlmsg_seq, -err->error});
    }
  }
  return errors;
}

Result<bool> NftTables::persist_supported() {
  if (persist_supported_) return *persist_supported_;
  const std::string boot = boot_id();
  if (auto kept = read_features(features_file_, boot)) return *(persist_supported_ = kept);
  // NEWTABLE with OWNER|PERSIST, then a message bound to fail, so the kernel
  // aborts the transaction: EOPNOTSUPP on the first means no PERSIST. Nobody
  // sees a change (committing the table and its deletion instead would show
  // in `nft monitor` at every apply); the abort costs an RCU grace period.
  // Both names are this probe's own, so no table someone made can answer for
  // them (an existing table would take the flags as an update, and refuse).
  std::random_device random;
  const std::string tag = fmt::format("{}-{:08x}{:08x}", ::getpid(), random(), random());
  const nft::TableId probe{nft::TableFamily::kArp, "arpguard-probe-" + tag};
  nftcodec::NftBatch batch(seq_);
  batch.add(nft_change::CreateTable{probe, nft::kTableFlagOwner | nft::kTableFlagPersist, false});
  const uint32_t probe_seq = seq_ - 1;
  batch.add(nft_change::DeleteTable{nft::TableId{nft::TableFamily::kArp, "arpguard-absent-" + tag}});
  auto errors = send(batch.finish());
  if (!errors) return errors.error();
  bool supported = true;
  bool known = true;
  for (const BatchError& e : *errors) {
    if (e.seq != probe_seq) continue;
    supported = false;
    known = e.error == EOPNOTSUPP;  // anything else says nothing about PERSIST
  }
  if (!known) {
    // A plain table for this run; asked again by the next.
    persist_supported_ = false;
    return false;
  }
  persist_supported_ = supported;
  write_features(features_file_, boot, supported);
  return supported;
}

namespace {

// One request, then every reply message to `on_message` until the dump (or ack) ends.
Status talk(mnl_socket* sock, uint32_t portid, uint32_t& seq_counter, uint16_t type, uint16_t family, uint16_t flags,
            const std::function<void(nlmsghdr*)>& build, Callback on_message, const std::string& what) {
  RecvBuffer buffer(kReceiveBuffer);
  const uint32_t seq = seq_counter++;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buffer.data(), type, family, flags, seq);
  build(nlh);
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) return Status::failure(what, errno);
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(sock, buffer.data(), buffer.size());
    if (n < 0) return Status::failure(what, errno);
    const int ret = mnl_cb_run(buffer.data(), static_cast<size_t>(n), seq, portid, run_callback, &on_message);
    if (ret < 0) return Status::failure(what, errno);
    if (ret == MNL_CB_STOP) return Status();
  }
}

}  // namespace

Result<std::optional<ObservedTable>> NftTables::observe_one(const nft::TableId& id, bool with_elements) {
  const uint16_t family = static_cast<uint16_t>(id.family);
  const std::vector<nft::TableId> ours{id};
  // The pieces decode as the same deltas notifications do, folded into a scratch cache.
  Observed scratch;
  bool exists = false;
  auto fold = [&](const nlmsghdr* nlh) {
    if (auto d = nftcodec::decode(nlh, ours)) {
      exists |= std::holds_alternative<delta::TableUpsert>(*d);
      apply_delta(scratch, *d);
    }
  };
  auto name_table = [&](auto set_str, auto* object, uint16_t attr) { set_str(object, attr, id.name.c_str()); };

  std::unique_ptr<nftnl_table, void (*)(const nftnl_table*)> table(nftnl_table_alloc(), nftnl_table_free);
  name_table(nftnl_table_set_str, table.get(), NFTNL_TABLE_NAME);
  Status got = talk(sock_, portid_, seq_, NFT_MSG_GETTABLE, family, NLM_F_ACK,
                    [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, table.get()); }, fold,
                    "GETTABLE " + id.str());
  if (!got) {
    if (got.error().errno_value == ENOENT) return std::optional<ObservedTable>();
    return got.error();
  }
  if (!exists) return std::optional<ObservedTable>();

  std::unique_ptr<nftnl_set, void (*)(const nftnl_set*)> sets(nftnl_set_alloc(), nftnl_set_free);
  name_table(nftnl_set_set_str, sets.get(), NFTNL_SET_TABLE);
  Status s = talk(sock_, portid_, seq_, NFT_MSG_GETSET, family, NLM_F_DUMP,
                  [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, sets.get()); }, fold, "GETSET " + id.str());
  if (!s) return s.error();

  std::unique_ptr<nftnl_chain, void (*)(const nftnl_chain*)> chains(nftnl_chain_alloc(), nftnl_chain_free);
  name_table(nftnl_chain_set_str, chains.get(), NFTNL_CHAIN_TABLE);
  s = talk(sock_, portid_, seq_, NFT_MSG_GETCHAIN, family, NLM_F_DUMP,
           [&](nlmsghdr* nlh) { nftnl_chain_nlmsg_build_payload(nlh, chains.get()); }, fold, "GETCHAIN " + id.str());
  if (!s) return s.error();

  std::unique_ptr<nftnl_rule, void (*)(const nftnl_rule*)> rules(nftnl_rule_alloc(), nftnl_rule_free);
  name_table(nftnl_rule_set_str, rules.get(), NFTNL_RULE_TABLE);
  s = talk(sock_, portid_, seq_, NFT_MSG_GETRULE, family, NLM_F_DUMP,
           [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, rules.get()); }, fold, "GETRULE " + id.str());
  if (!s) return s.error();

  ObservedTable& observed = scratch.tables[id];
  std::vector<std::string> set_names;
  if (with_elements) {
    for (const auto& [name, set] : observed.sets) set_names.push_back(name);
  }
  for (const std::string& name : set_names) {
    std::unique_ptr<nftnl_set, void (*)(const nftnl_set*)> elements(nftnl_set_alloc(), nftnl_set_free);
    name_table(nftnl_set_set_str, elements.get(), NFTNL_SET_TABLE);
    nftnl_set_set_str(elements.get(), NFTNL_SET_NAME, name.c_str());
    s = talk(sock_, portid_, seq_, NFT_MSG_GETSETELEM, family, NLM_F_DUMP,
             [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, elements.get()); }, fold,
             fmt::format("GETSETELEM {} @{}", id.str(), name));
    if (!s) return s.error();
  }
  return std::optional<ObservedTable>(std::move(scratch.tables[id]));
}

Result<uint32_t> NftTables::generation() {
  std::optional<uint32_t> id;
  Status s = talk(sock_, portid_, seq_, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, [](nlmsghdr*) {},
                  [&](const nlmsghdr* nlh) {
                    if (auto heard = nftcodec::generation_of(nlh)) id = heard;
                  },
                  "GETGEN");
  if (!s) return s.error();
  if (!id) return Error{"GETGEN: the kernel's answer has no generation"};
  return *id;
}

Result<std::map<nft::TableId, ObservedTable>> NftTables::observe(const std::vector<nft::TableId>& tables) {
  return observe_consistent(tables, true);
}

Result<std::map<nft::TableId, ObservedTable>> NftTables::observe_structure(const std::vector<nft::TableId>& tables) {
  return observe_consistent(tables, false);
}

Result<std::map<nft::TableId, ObservedTable>> NftTables::observe_consistent(const std::vector<nft::TableId>& tables,
                                                                            bool with_elements) {
  // A table is read in several dumps, and a dump of a big set in many parts:
  // a commit in between (someone fighting over the set) can make the picture
  // miss elements nobody changed. A read is one picture when the ruleset's
  // generation stayed the same, or when the commits made meanwhile were all
  // to tables not arpguard's (their notifications say so).
  if (!watch_) watch_ = CommitWatch::open();
  CommitWatch* watch = watch_ && watch_->listen(true) ? watch_.get() : nullptr;
  struct Quiet {  // stops listening however the read ends
    CommitWatch* watch;
    ~Quiet() {
      if (watch) watch->listen(false);
    }
  } quiet{watch};
  for (int attempt = 1;; ++attempt) {
    if (watch) watch->discard();
    auto before = generation();
    if (!before) return before.error();
    // Nobody has committed since the elements were last known: only the
    // structure is read, and the elements are those known.
    const bool known = with_elements && known_ && known_generation_ == *before;
    std::map<nft::TableId, ObservedTable> out;
    for (const nft::TableId& id : tables) {
      auto table = observe_one(id, with_elements && !known);
      if (!table) return table.error();
      if (*table) out.emplace(id, std::move(**table));
    }
    if (known) fill_known_elements(out);
    auto after = generation();
    if (!after) return after.error();
    const bool consistent = *after == *before || (watch && watch->left_alone(*after, tables));
    if (consistent && known && *after != *before) continue;  // the memory is no longer proven: read them
    if (consistent) {
      if (with_elements && remember_elements_ && !known) remember(out, *after);
      return out;
    }
    if (attempt == kObserveAttempts) {
      return Error{fmt::format("nftables changed while it was read, {} times in a row", kObserveAttempts)};
    }
  }
}

void NftTables::remember(const std::map<nft::TableId, ObservedTable>& tables, uint32_t generation) {
  known_ = std::make_unique<Observed>();
  known_->tables = tables;
  known_generation_ = generation;
}

void NftTables::fill_known_elements(std::map<nft::TableId, ObservedTable>& tables) const {
  for (auto& [id, table] : tables) {
    auto was = known_->tables.find(id);
    if (was == known_->tables.end()) continue;
    for (auto& [name, set] : table.sets) {
      auto known = was->second.sets.find(name);
      if (known == was->second.sets.end()) continue;
      set.points = known->second.points;
      set.elements = known->second.elements;
    }
  }
}

void NftTables::fold_elements(const NftChange& change) {
  // As apply_delta would, without working out the regions touched.
  auto set_of = [&](const SetRef& ref) -> ObservedSet* {
    auto table = known_->tables.find(ref.table);
    if (table == known_->tables.end()) return nullptr;
    auto set = table->second.sets.find(ref.set);
    return set == table->second.sets.end() ? nullptr : &set->second;
  };
  auto fold = [&](const SetRef& ref, const nft::SetSpec& shape, const std::vector<nft::Element>& elements, bool add) {
    ObservedSet* set = set_of(ref);
    if (!set) return;
    for (const nft::Element& e : elements) {
      if (shape.concatenated()) {
        add ? (void)set->elements.insert(e) : (void)set->elements.erase(e);
        continue;
      }
      for (const auto& point : interval_points(e)) add ? (void)set->points.insert(point) : (void)set->points.erase(point);
    }
  };
  if (const auto* add = std::get_if<nft_change::AddElements>(&change)) fold(add->set, add->shape, add->elements, true);
  if (const auto* del = std::get_if<nft_change::DelElements>(&change)) fold(del->set, del->shape, del->elements, false);
}

void NftTables::fold_own_commit(const std::vector<NftChange>& changes) {
  if (!known_) return;
  // Ours is the only commit since the elements were known exactly when the
  // generation moved by one; anything else, and they are read again.
  auto now = generation();
  if (!now || !known_generation_ || *now != *known_generation_ + 1) {
    known_.reset();
    known_generation_.reset();
    return;
  }
  for (const NftChange& change : changes) {
    // Tables and sets as the commit made them (a set made anew holds nothing), then its elements.
    if (const auto* gone = std::get_if<nft_change::DeleteTable>(&change)) known_->tables.erase(gone->table);
    if (const auto* made = std::get_if<nft_change::CreateTable>(&change)) known_->tables.try_emplace(made->table);
    if (const auto* set = std::get_if<nft_change::CreateSet>(&change)) {
      known_->tables[set->table].sets.try_emplace(set->set.name);
    }
    fold_elements(change);
  }
  known_generation_ = *now;
}

namespace {

// Elements in a commit worth muting its listener for: two GETGENs and a
// drain cost about 0.1 ms, the notifications of 1,000 elements 3 ms and more.
constexpr size_t kMutedElements = 1000;

size_t elements_in(const NftChange& change) {
  if (const auto* add = std::get_if<nft_change::AddElements>(&change)) return add->elements.size();
  if (const auto* del = std::get_if<nft_change::DelElements>(&change)) return del->elements.size();
  return 0;
}

}  // namespace

Status NftTables::apply(const std::vector<NftChange>& changes) {
  if (changes.empty()) return Status();
  if (listener_) {
    size_t elements = 0;
    bool drops_table = false;
    for (const NftChange& change : changes) {
      elements += elements_in(change);
      drops_table |= std::holds_alternative<nft_change::DeleteTable>(change);
    }
    if (elements >= kMutedElements && !drops_table) return commit_elements_muted(changes);
  }
  return commit(changes);
}

Status NftTables::commit_elements_muted(const std::vector<NftChange>& changes) {
  // Two transactions instead of one: no VIP goes in before the nft phase is
  // over (I1), so none can be seen between them; the elements are told
  // exactly as the kernel would notify them, the rules (whose handles only
  // the kernel knows) are notified as ever.
  std::vector<NftChange> structure;
  std::vector<NftChange> elements;
  for (const NftChange& change : changes) (elements_in(change) ? elements : structure).push_back(change);
  if (!structure.empty()) {
    if (Status s = commit(structure); !s) return s;
  }
  // A commit of someone else's while muted shows as a generation moved by
  // more than ours: the listener then reads everything again. One before
  // the mute is heard by it first: the kernel moves the generation before it
  // notifies, so the listener waits for that commit's last notification.
  auto before = generation();
  if (!before || !listener_->mute(*before)) return commit(elements);
  const Status status = commit(elements);
  std::vector<KernelEvent> told;
  if (status) {
    for (const NftChange& change : elements) {
      if (auto delta = committed_delta(change)) told.push_back(KernelEvent{portid_, std::move(*delta)});
    }
  }
  listener_->unmute(std::move(told));
  auto after = generation();
  if (!after || *after != *before + (status ? 1u : 0u)) listener_->missed();
  return status;
}

Status NftTables::commit(const std::vector<NftChange>& changes) {
  nftcodec::NftBatch batch(seq_);
  for (const NftChange& change : changes) batch.add(change);
  auto errors = send(batch.finish());
  if (!errors || !errors->empty()) {
    known_.reset();  // what the kernel holds now is not worked out here
    known_generation_.reset();
  }
  if (!errors) return errors.status();
  if (errors->empty()) {
    fold_own_commit(changes);
    return Status();
  }
  const BatchError& first = errors->front();
  std::string what = batch.what(first.seq);
  if (first.error == EPERM) what += " (the table is owned by another process: is another arpguardd running?)";
  if (first.error == EOPNOTSUPP || first.error == EAFNOSUPPORT) {
    what += " (this kernel lacks an nftables feature arpguard needs: is nf_tables loaded, with IPv6?)";
    // What was kept of the kernel's features may be wrong (a module replaced): probed again next time.
    persist_supported_.reset();
    if (!features_file_.empty()) ::unlink(features_file_.c_str());
  }
  return Status::failure("nft: " + what, first.error);
}

}  // namespace arpguard
