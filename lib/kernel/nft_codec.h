// nftables objects between the values of rules/nft_spec.h and core/model.h
// and netlink messages, both ways, over libnftnl.
//
// decode_*() read one message (from a dump or a notification) into what the
// cache holds; they are pure functions over bytes, tested with captured
// messages, and the same code serves dumps and events. NftBatch builds one
// atomic transaction from plan changes. Not thread-safe: one owner.
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/observed_delta.h"
#include "core/plan.h"

struct nftnl_batch;
struct nftnl_rule;
struct iovec;

namespace arpguard::nftcodec {

/// NFT_MSG_NEWTABLE / DELTABLE, ... as a Delta; nullopt for messages about
/// other tables or of other kinds.
std::optional<Delta> decode(const nlmsghdr* nlh, const std::vector<nft::TableId>& ours);

/// The generation a NFT_MSG_NEWGEN message names (NFTA_GEN_ID); nullopt for
/// any other message, or one without it.
std::optional<uint32_t> generation_of(const nlmsghdr* nlh);

/// Rule expressions as the IR of rules/nft_spec.h, normalized.
std::vector<nft::Expr> decode_exprs(const nftnl_rule* rule);

/// One atomic nfnetlink transaction. Each message remembers what it was for,
/// so an error names it.
class NftBatch {
 public:
  explicit NftBatch(uint32_t& seq);
  ~NftBatch();
  NftBatch(const NftBatch&) = delete;
  NftBatch& operator=(const NftBatch&) = delete;

  void add(const NftChange& change);
  /// Ends the batch; the iovecs to send.
  std::vector<iovec> finish();
  /// What the message with sequence `seq` was for.
  std::string what(uint32_t seq) const;

 private:
  nlmsghdr* message(uint16_t type, nft::TableFamily family, uint16_t flags, std::string what);
  void done();
  uint32_t set_id(const SetRef& set);

  uint32_t& seq_;
  nftnl_batch* batch_;
  std::map<uint32_t, std::string> what_;
  std::map<SetRef, uint32_t> set_ids_;
};

}  // namespace arpguard::nftcodec
