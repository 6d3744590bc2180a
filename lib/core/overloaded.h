// The overload set for std::visit: one lambda per alternative, so a new
// alternative fails to compile wherever it is not handled (STYLE 15).
#pragma once

namespace arpguard {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

}  // namespace arpguard
