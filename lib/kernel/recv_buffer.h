// A receive buffer for netlink datagrams, left uninitialised.
//
// A zero-filled std::vector<char> of 256 KiB is resident from the start; the
// pages of this one become resident only as datagrams fill them, which for
// notifications is a few KiB. Not thread-safe; movable.
#pragma once

#include <cstddef>
#include <memory>

namespace arpguard {

class RecvBuffer {
 public:
  explicit RecvBuffer(size_t size) : data_(new char[size]), size_(size) {}  // default-initialised: untouched

  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }

 private:
  std::unique_ptr<char[]> data_;
  size_t size_;
};

}  // namespace arpguard
