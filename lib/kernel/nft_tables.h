// NftApi over libmnl + libnftnl: arpguard's tables of every family.
//
// Holds one netlink socket for its lifetime: when a table is created or
// adopted with NFT_TABLE_F_OWNER, that socket is its owner, and only it may
// change the table. Every apply() is one atomic nfnetlink batch; observe()
// decodes dumps with the same code as notifications (kernel/nft_codec.h).
// Not thread-safe: one owner.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "core/kernel_api.h"
#include "core/observed_delta.h"

struct mnl_socket;
struct iovec;

namespace arpguard {

class CommitWatch;

/// The listener to arpguard's own nftables commits (arpguardd's event
/// socket). For everyone who listens, the kernel builds a notification per
/// set element in the committing process: 100,000 elements cost it 0.4 to
/// 3.5 s more than the commit alone (0.35 s). A big commit of elements is
/// made with the listener muted, and told what it made instead.
class OwnCommitListener {
 public:
  virtual ~OwnCommitListener() = default;
  /// Stops the kernel's notifications to it, once every commit up to
  /// `generation` has been heard whole; false when they still come.
  virtual bool mute(uint32_t generation) = 0;
  /// Starts them again, after `told`: what the commit made, as the kernel
  /// would have notified it, after whatever came before the mute.
  virtual void unmute(std::vector<KernelEvent> told) = 0;
  /// Commits by others may have gone unheard meanwhile: read everything again.
  virtual void missed() = 0;
};

class NftTables final : public NftApi {
 public:
  /// `features_file`: where what persist_supported() found is kept for the
  /// rest of this boot (empty: nowhere, it is probed once per NftTables).
  ///
  /// `remember_elements`: the sets' elements of the last read are kept, with
  /// arpguard's own commits folded in, while the ruleset's generation proves
  /// nobody else committed since; a read then takes them from memory and
  /// reads only the structure. For `arpguard apply`, whose read-back of a set
  /// of 100,000 intervals costs the kernel 0.4 s; not for the daemon, whose
  /// cache of notifications is the copy (the memory would be twice).
  static Result<std::unique_ptr<NftTables>> open(std::string features_file = {}, bool remember_elements = false);
  ~NftTables() override;

  /// Whether the kernel knows NFT_TABLE_F_PERSIST. Probing costs an aborted
  /// transaction (the kernel waits for an RCU grace period, 10 to 15 ms), so
  /// the answer is kept in the features file, keyed by the boot's id.
  Result<bool> persist_supported() override;
  uint32_t portid() const override { return portid_; }
  Result<std::map<nft::TableId, ObservedTable>> observe(const std::vector<nft::TableId>& tables) override;
  Result<std::map<nft::TableId, ObservedTable>> observe_structure(const std::vector<nft::TableId>& tables) override;
  Status apply(const std::vector<NftChange>& changes) override;
  Result<uint32_t> generation() override;
  /// Where big commits of elements are told instead of notified (none: not muted).
  void tell_own_commits(OwnCommitListener* listener) { listener_ = listener; }

 private:
  NftTables(mnl_socket* sock, uint32_t portid, std::string features_file, bool remember_elements);
  struct BatchError {
    uint32_t seq;
    int error;
  };
  /// Sends a finished batch; the errors the kernel reported, by sequence number.
  Result<std::vector<BatchError>> send(const std::vector<iovec>& iov);
  /// One table, or nullopt when it does not exist.
  Result<std::optional<ObservedTable>> observe_one(const nft::TableId& id, bool with_elements);
  Result<std::map<nft::TableId, ObservedTable>> observe_consistent(const std::vector<nft::TableId>& tables,
                                                                   bool with_elements);
  /// The elements' memory (remember_elements): kept after a whole read,
  /// given to a read's sets, and moved on by a commit of ours.
  void remember(const std::map<nft::TableId, ObservedTable>& tables, uint32_t generation);
  void fill_known_elements(std::map<nft::TableId, ObservedTable>& tables) const;
  void fold_own_commit(const std::vector<NftChange>& changes);
  /// One batch, all of `changes`, heard by every listener.
  Status commit(const std::vector<NftChange>& changes);
  /// The structure first, heard as usual; then the elements, muted and told.
  Status commit_elements_muted(const std::vector<NftChange>& changes);
  void fold_elements(const NftChange& change);

  mnl_socket* sock_;
  uint32_t portid_;
  uint32_t seq_ = 1;
  std::optional<bool> persist_supported_;
  std::string features_file_;
  std::unique_ptr<CommitWatch> watch_;  ///< notifications during a read, opened at the first
  OwnCommitListener* listener_ = nullptr;
  bool remember_elements_ = false;
  /// Our tables as of generation `known_generation_` (only while remembering).
  std::unique_ptr<Observed> known_;
  std::optional<uint32_t> known_generation_;
};

}  // namespace arpguard
