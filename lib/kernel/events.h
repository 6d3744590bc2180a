// Kernel change notifications arpguardd listens to: rtnetlink (links,
// addresses and routes of both families) and nftables (NFNLGRP_NFTABLES).
//
// decode_*() are pure functions over received bytes, tested with captured
// messages; EventSocket owns one subscribed, non-blocking socket. Events are
// typed cache changes (core/observed_delta.h), so duplicate or late ones are
// harmless. Not thread-safe: one owner.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "core/observed_delta.h"
#include "core/status.h"
#include "kernel/nft_tables.h"
#include "kernel/recv_buffer.h"

struct mnl_socket;

namespace arpguard {

/// Link, address and local-route notifications in one rtnetlink datagram.
std::vector<KernelEvent> decode_rtnetlink(const void* data, size_t len);
/// nftables notifications in one datagram, only those about arpguard's tables.
/// `ends_transaction`, when given, says whether the datagram's last message
/// ends a transaction (NFT_MSG_NEWGEN, sent after all of a commit's others).
/// `generation`, when given, receives the id of the last NFT_MSG_NEWGEN in it.
std::vector<KernelEvent> decode_nftables(const void* data, size_t len, bool* ends_transaction = nullptr,
                                         std::optional<uint32_t>* generation = nullptr);

class EventSocket final : public OwnCommitListener {
 public:
  enum class Kind { kRtnetlink, kNftables };

  /// Opens and subscribes a non-blocking socket with a receive buffer of
  /// `receive_buffer` bytes (forced where the capability allows).
  static Result<std::unique_ptr<EventSocket>> open(Kind kind, int receive_buffer);
  ~EventSocket() override;
  EventSocket(const EventSocket&) = delete;
  EventSocket& operator=(const EventSocket&) = delete;

  int fd() const;
  /// Reads every pending datagram into `events`. `lost` is set when the
  /// kernel dropped notifications for lack of room (ENOBUFS): the caller
  /// must read everything again.
  Status drain(std::vector<KernelEvent>& events, bool& lost);
  /// nftables: whether the last drain ended at the end of a transaction, so
  /// that every commit notified so far has been read whole. False after a
  /// loss or a failed read; always false for rtnetlink, which has no such mark.
  bool between_transactions() const { return between_transactions_; }

  // OwnCommitListener (nftables): what drain() gives next is what came
  // before the mute, then what was told, then what comes after the unmute.
  bool mute(uint32_t generation) override;
  void unmute(std::vector<KernelEvent> told) override;
  void missed() override { unheard_ = true; }
  /// Whether missed() was said since the last call: everything is to be read again.
  bool take_unheard() { return std::exchange(unheard_, false); }

 private:
  EventSocket(mnl_socket* sock, Kind kind) : sock_(sock), kind_(kind) {}
  /// The datagrams in the socket now, decoded into `events`.
  Status read_socket(std::vector<KernelEvent>& events, bool& lost);
  bool join(bool on);

  mnl_socket* sock_;
  Kind kind_;
  bool between_transactions_ = false;
  std::vector<KernelEvent> told_;  ///< read or told while muted, for the next drain
  bool told_lost_ = false;         ///< the socket overran while read for a mute
  bool unheard_ = false;           ///< someone else committed while muted
  Status told_error_;              ///< a read while muted failed
  bool deaf_ = false;              ///< the group could not be joined again: retried at each drain
  std::optional<uint32_t> heard_generation_;  ///< the last commit heard whole (its NFT_MSG_NEWGEN)
  RecvBuffer buffer_{256 * 1024};  ///< any datagram rtnetlink or nftables sends
};

}  // namespace arpguard
