#include "kernel/nft_table.h"

#include <fmt/format.h>
#include <libmnl/libmnl.h>
#include <libnftnl/batch.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>

#include <cerrno>
#include <functional>
#include <map>
#include <string>

#include "rules/arp_table_nftnl.h"

namespace arpguard {

namespace {

constexpr uint32_t kPageSize = 256 * 1024;
constexpr uint32_t kPageOverrun = 128 * 1024;  // room for the largest single message
constexpr size_t kElementsPerMessage = 500;    // ranges; two elements each
constexpr size_t kReceiveBuffer = 64 * 1024;

const std::string kTableName(rules::kTable);

using Callback = std::function<void(const nlmsghdr*)>;

int run_callback(const nlmsghdr* nlh, void* data) {
  (*static_cast<Callback*>(data))(nlh);
  return MNL_CB_OK;
}

}  // namespace

// A batch of nfnetlink messages, each remembered by sequence number with a
// description for error messages.
class NftTable::Batch {
 public:
  explicit Batch(uint32_t& seq) : seq_(seq), batch_(nftnl_batch_alloc(kPageSize, kPageOverrun)) {
    nftnl_batch_begin(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
    nftnl_batch_update(batch_);
  }
  ~Batch() { nftnl_batch_free(batch_); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  /// Starts a message; the caller writes its payload, then calls done().
  nlmsghdr* message(uint16_t type, uint16_t flags, std::string what) {
    const uint32_t seq = seq_++;
    what_[seq] = std::move(what);
    return nftnl_nlmsg_build_hdr(static_cast<char*>(nftnl_batch_buffer(batch_)), type, NFPROTO_ARP,
                                 flags | NLM_F_ACK, seq);
  }
  void done() { nftnl_batch_update(batch_); }
  void finish() {
    nftnl_batch_end(static_cast<char*>(nftnl_batch_buffer(batch_)), seq_++);
    nftnl_batch_update(batch_);
  }
  nftnl_batch* raw() { return batch_; }
  const std::string& what(uint32_t seq) const {
    static const std::string unknown = "nft batch";
    auto it = what_.find(seq);
    return it == what_.end() ? unknown : it->second;
  }

 private:
  uint32_t& seq_;
  nftnl_batch* batch_;
  std::map<uint32_t, std::string> what_;
};

Result<std::unique_ptr<NftTable>> NftTable::open() {
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
  const int rcvbuf = 1 << 20;
  setsockopt(mnl_socket_get_fd(sock), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  return std::unique_ptr<NftTable>(new NftTable(sock, mnl_socket_get_portid(sock)));
}

NftTable::~NftTable() { mnl_socket_close(sock_); }

Result<std::vector<NftTable::BatchError>> NftTable::send(Batch& batch) {
  batch.finish();
  const int iov_len = nftnl_batch_iovec_len(batch.raw());
  std::vector<iovec> iov(iov_len);
  nftnl_batch_iovec(batch.raw(), iov.data(), iov_len);
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;

  // A batch must fit the socket's send buffer whole.
  const int fd = mnl_socket_get_fd(sock_);
  const int sndbuf = static_cast<int>(total + 4096);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
  }
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof(kernel);
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  if (sendmsg(fd, &msg, 0) < 0) return Error{fmt::format("send nft batch ({} bytes)", total), errno};

  // nfnetlink handles a batch inside sendmsg(): every ack is queued by now.
  std::vector<BatchError> errors;
  std::vector<char> buffer(kReceiveBuffer);
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

Result<bool> NftTable::persist_supported() {
  if (persist_supported_) return *persist_supported_;
  // NEWTABLE with OWNER|PERSIST, then a message bound to fail, so the kernel
  // aborts the transaction: EOPNOTSUPP on the first means no PERSIST.
  Batch batch(seq_);
  const std::string probe = kTableName + "-probe";
  rules::TablePtr table = rules::encode_table(rules::kTableFlagOwner | rules::kTableFlagPersist);
  nftnl_table_set_str(table.get(), NFTNL_TABLE_NAME, probe.c_str());
  nlmsghdr* nlh = batch.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, "probe table flags");
  const uint32_t probe_seq = nlh->nlmsg_seq;
  nftnl_table_nlmsg_build_payload(nlh, table.get());
  batch.done();
  rules::ChainPtr chain = rules::encode_chain(rules::kInputChain);
  const std::string absent = kTableName + "-absent";
  nftnl_chain_set_str(chain.get(), NFTNL_CHAIN_TABLE, absent.c_str());
  nftnl_chain_nlmsg_build_payload(batch.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, "probe abort"), chain.get());
  batch.done();
  auto errors = send(batch);
  if (!errors) return errors.error();
  bool supported = true;
  for (const BatchError& e : *errors) {
    if (e.seq == probe_seq) supported = false;
  }
  persist_supported_ = supported;
  return supported;
}

namespace {

// One request, then every reply message to `on_message` until the dump (or ack) ends.
Status talk(mnl_socket* sock, uint32_t portid, uint32_t& seq_counter, uint16_t type, uint16_t flags,
            const std::function<void(nlmsghdr*)>& build, Callback on_message, const std::string& what) {
  std::vector<char> buffer(kReceiveBuffer);
  const uint32_t seq = seq_counter++;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buffer.data(), type, NFPROTO_ARP, flags, seq);
  build(nlh);
  if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) return Status::failure(what, errno);
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(sock, buffer.data(), buffer.size());
    if (n < 0) return Status::failure(what, errno);
    const int ret = mnl_cb_run(buffer.data(), n, seq, portid, run_callback, &on_message);
    if (ret < 0) return Status::failure(what, errno);
    if (ret == MNL_CB_STOP) return Status();
  }
}

}  // namespace

Result<ObservedArpTable> NftTable::observe() {
  ObservedArpTable out;
  auto supported = persist_supported();
  if (!supported) return supported.error();
  out.persist_supported = *supported;

  // The table itself: absent is a normal answer.
  rules::TablePtr query = rules::encode_table(0);
  nftnl_table_unset(query.get(), NFTNL_TABLE_FLAGS);
  Status got = talk(
      sock_, portid_, seq_, NFT_MSG_GETTABLE, NLM_F_ACK,
      [&](nlmsghdr* nlh) { nftnl_table_nlmsg_build_payload(nlh, query.get()); },
      [&](const nlmsghdr* nlh) {
        rules::TablePtr table(nftnl_table_alloc());
        if (nftnl_table_nlmsg_parse(nlh, table.get()) < 0) return;
        out.exists = true;
        out.flags = nftnl_table_get_u32(table.get(), NFTNL_TABLE_FLAGS);
        const bool has_owner = nftnl_table_is_set(table.get(), NFTNL_TABLE_OWNER);
        out.owned_by_us = (out.flags & rules::kTableFlagOwner) && has_owner &&
                          nftnl_table_get_u32(table.get(), NFTNL_TABLE_OWNER) == portid_;
      },
      "GETTABLE arp " + kTableName);
  if (!got) {
    if (got.error().errno_value == ENOENT) return out;
    return got.error();
  }
  if (!out.exists) return out;

  rules::SetPtr set_query(nftnl_set_alloc());
  nftnl_set_set_str(set_query.get(), NFTNL_SET_TABLE, kTableName.c_str());
  Status sets = talk(
      sock_, portid_, seq_, NFT_MSG_GETSET, NLM_F_DUMP,
      [&](nlmsghdr* nlh) { nftnl_set_nlmsg_build_payload(nlh, set_query.get()); },
      [&](const nlmsghdr* nlh) {
        rules::SetPtr set(nftnl_set_alloc());
        if (nftnl_set_nlmsg_parse(nlh, set.get()) < 0) return;
        if (kTableName != nftnl_set_get_str(set.get(), NFTNL_SET_TABLE)) return;
        const bool ours = std::string(rules::kSet) == nftnl_set_get_str(set.get(), NFTNL_SET_NAME);
        if (ours && rules::set_has_expected_shape(set.get())) {
          out.set_ok = true;
        } else {
          out.malformed = true;
        }
      },
      "GETSET arp " + kTableName);
  if (!sets) return sets.error();

  Status chains = talk(
      sock_, portid_, seq_, NFT_MSG_GETCHAIN, NLM_F_DUMP, [](nlmsghdr*) {},
      [&](const nlmsghdr* nlh) {
        rules::ChainPtr chain(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, chain.get()) < 0) return;
        if (kTableName != nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_TABLE)) return;
        const std::string name = nftnl_chain_get_str(chain.get(), NFTNL_CHAIN_NAME);
        if (!rules::chain_has_expected_shape(chain.get())) {
          out.malformed = true;
        } else if (name == rules::kInputChain) {
          out.input_chain = true;
        } else {
          out.output_chain = true;
        }
      },
      "GETCHAIN arp");
  if (!chains) return chains.error();

  rules::RulePtr rule_query(nftnl_rule_alloc());
  nftnl_rule_set_str(rule_query.get(), NFTNL_RULE_TABLE, kTableName.c_str());
  Status rule_dump = talk(
      sock_, portid_, seq_, NFT_MSG_GETRULE, NLM_F_DUMP,
      [&](nlmsghdr* nlh) { nftnl_rule_nlmsg_build_payload(nlh, rule_query.get()); },
      [&](const nlmsghdr* nlh) {
        rules::RulePtr rule(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, rule.get()) < 0) return;
        if (kTableName != nftnl_rule_get_str(rule.get(), NFTNL_RULE_TABLE)) return;
        ObservedRule observed;
        observed.handle = nftnl_rule_get_u64(rule.get(), NFTNL_RULE_HANDLE);
        observed.chain = nftnl_rule_get_str(rule.get(), NFTNL_RULE_CHAIN);
        observed.rule = rules::decode_rule(rule.get());
        std::tie(observed.packets, observed.bytes) = rules::decode_counter(rule.get());
        out.rules.push_back(std::move(observed));
      },
      "GETRULE arp " + kTableName);
  if (!rule_dump) return rule_dump.error();

  if (out.set_ok) {
    rules::SetPtr elements(nftnl_set_alloc());
    nftnl_set_set_str(elements.get(), NFTNL_SET_TABLE, kTableName.c_str());
    nftnl_set_set_str(elements.get(), NFTNL_SET_NAME, std::string(rules::kSet).c_str());
    Status elems = talk(
        sock_, portid_, seq_, NFT_MSG_GETSETELEM, NLM_F_DUMP,
        [&](nlmsghdr* nlh) { nftnl_set_elems_nlmsg_build_payload(nlh, elements.get()); },
        [&](const nlmsghdr* nlh) { nftnl_set_elems_nlmsg_parse(nlh, elements.get()); },
        "GETSETELEM arp " + kTableName + " " + std::string(rules::kSet));
    if (!elems) return elems.error();
    out.vips = rules::decode_elements(elements.get());
  }
  return out;
}

Status NftTable::apply(const std::vector<NftChange>& changes) {
  if (changes.empty()) return Status();
  constexpr uint32_t kOwned = rules::kTableFlagOwner | rules::kTableFlagPersist;
  Batch batch(seq_);
  for (const NftChange& change : changes) {
    const std::string what = describe(change);
    if (auto* create = std::get_if<NftCreateTable>(&change)) {
      if (create->table) {
        nftnl_table_nlmsg_build_payload(batch.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, what),
                                        rules::encode_table(create->owned ? kOwned : 0).get());
        batch.done();
      }
      if (create->set) {
        nftnl_set_nlmsg_build_payload(batch.message(NFT_MSG_NEWSET, NLM_F_CREATE, what), rules::encode_set().get());
        batch.done();
      }
      for (auto [wanted, name] : {std::pair{create->input_chain, rules::kInputChain},
                                  std::pair{create->output_chain, rules::kOutputChain}}) {
        if (!wanted) continue;
        nftnl_chain_nlmsg_build_payload(batch.message(NFT_MSG_NEWCHAIN, NLM_F_CREATE, what),
                                        rules::encode_chain(name).get());
        batch.done();
      }
    } else if (std::holds_alternative<NftAdoptTable>(change)) {
      nftnl_table_nlmsg_build_payload(batch.message(NFT_MSG_NEWTABLE, NLM_F_CREATE, what),
                                      rules::encode_table(kOwned).get());
      batch.done();
    } else if (std::holds_alternative<NftDeleteTable>(change)) {
      rules::TablePtr table = rules::encode_table(0);
      nftnl_table_unset(table.get(), NFTNL_TABLE_FLAGS);
      nftnl_table_nlmsg_build_payload(batch.message(NFT_MSG_DELTABLE, 0, what), table.get());
      batch.done();
    } else if (auto* del_rule = std::get_if<NftDelRule>(&change)) {
      rules::RulePtr rule(nftnl_rule_alloc());
      nftnl_rule_set_str(rule.get(), NFTNL_RULE_TABLE, kTableName.c_str());
      nftnl_rule_set_str(rule.get(), NFTNL_RULE_CHAIN, del_rule->chain.c_str());
      nftnl_rule_set_u32(rule.get(), NFTNL_RULE_FAMILY, NFPROTO_ARP);
      nftnl_rule_set_u64(rule.get(), NFTNL_RULE_HANDLE, del_rule->handle);
      nftnl_rule_nlmsg_build_payload(batch.message(NFT_MSG_DELRULE, 0, what), rule.get());
      batch.done();
    } else if (auto* add_rule = std::get_if<NftAddRule>(&change)) {
      nftnl_rule_nlmsg_build_payload(batch.message(NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND, what),
                                     rules::encode_rule(add_rule->rule).get());
      batch.done();
    } else {
      const bool add = std::holds_alternative<NftAddElements>(change);
      const std::vector<Ipv4Range>& vips =
          add ? std::get<NftAddElements>(change).vips : std::get<NftDelElements>(change).vips;
      for (size_t begin = 0; begin < vips.size(); begin += kElementsPerMessage) {
        const size_t end = std::min(vips.size(), begin + kElementsPerMessage);
        rules::SetPtr set = rules::encode_elements({vips.begin() + begin, vips.begin() + end});
        nftnl_set_elems_nlmsg_build_payload(
            batch.message(add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, add ? NLM_F_CREATE : 0, what), set.get());
        batch.done();
      }
    }
  }
  auto errors = send(batch);
  if (!errors) return errors.status();
  if (errors->empty()) return Status();
  const BatchError& first = errors->front();
  std::string what = batch.what(first.seq);
  if (first.error == EPERM) what += " (the table is owned by another process: is arpguardd running?)";
  return Status::failure("nft: " + what, first.error);
}

}  // namespace arpguard
