// Errors as values across lib/: what was attempted, and the errno if any.
//
// A Status is ok or carries an Error; Result<T> is a T or an Error. Both are
// plain values, safe to copy between threads.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace arpguard {

struct Error {
  std::string what;       ///< what was attempted: "RTM_NEWADDR 10.0.0.5/32 dev lo"
  int errno_value = 0;    ///< 0 when the failure did not come from a syscall
  std::string hint = {};  ///< what to do about it, when arpguard can tell

  /// "RTM_NEWADDR 10.0.0.5/32 dev lo: File exists", then the hint in parentheses.
  std::string message() const {
    std::string out = errno_value == 0 ? what : what + ": " + std::strerror(errno_value);
    if (!hint.empty()) out += " (" + hint + ")";
    return out;
  }
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  static Status failure(std::string what, int errno_value = 0, std::string hint = {}) {
    return Status(Error{std::move(what), errno_value, std::move(hint)});
  }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  /// REQUIRES: !ok()
  const Error& error() const { return error_; }
  std::string message() const { return ok_ ? "ok" : error_.message(); }

 private:
  Error error_;
  bool ok_ = true;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : value_(std::move(error)) {}  // NOLINT
  Result(const Status& status) : value_(status.error()) {}  // NOLINT; REQUIRES: !status.ok()

  bool ok() const { return std::holds_alternative<T>(value_); }
  explicit operator bool() const { return ok(); }
  /// REQUIRES: ok()
  T& value() & { return std::get<T>(value_); }
  const T& value() const& { return std::get<T>(value_); }
  T&& value() && { return std::get<T>(std::move(value_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  /// REQUIRES: !ok()
  const Error& error() const { return std::get<Error>(value_); }
  Status status() const { return ok() ? Status() : Status(error()); }

 private:
  std::variant<T, Error> value_;
};

}  // namespace arpguard
