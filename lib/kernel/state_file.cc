#include "kernel/state_file.h"

#include "kernel/make_dirs.h"


#include <cerrno>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace arpguard {

Result<ManagedState> StateFile::load() {
  std::ifstream in(path());
  if (!in) {
    if (errno == ENOENT) return ManagedState{};
    return Error{"read " + path(), errno};
  }
  ManagedState state;
  try {
    const nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& vip : doc.value("vips", nlohmann::json::array())) {
      auto prefix = Ipv4Prefix::parse(vip.at("address").get<std::string>());
      if (!prefix) return Error{"read " + path() + ": bad address in vips"};
      state.vips.push_back({*prefix, vip.at("device").get<std::string>()});
    }
    for (const auto& entry : doc.value("sysctl_origin", nlohmann::json::array())) {
      state.sysctl_origin[SysctlKey{entry.at("scope").get<std::string>(), entry.at("name").get<std::string>()}] =
          entry.at("value").get<int>();
    }
  } catch (const nlohmann::json::exception& e) {
    return Error{"read " + path() + ": " + e.what()};
  }
  return state;
}

Status StateFile::save(const ManagedState& state) {
  if (Status s = make_dirs(dir_); !s) return s;
  nlohmann::json doc;
  doc["vips"] = nlohmann::json::array();
  for (const VipOnDevice& vip : state.vips) doc["vips"].push_back({{"address", vip.prefix.str()}, {"device", vip.device}});
  doc["sysctl_origin"] = nlohmann::json::array();
  for (const auto& [key, value] : state.sysctl_origin) {
    doc["sysctl_origin"].push_back({{"scope", key.scope}, {"name", key.name}, {"value", value}});
  }
  const std::string tmp = path() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << doc.dump(2) << '\n';
    if (!out.flush()) return Status::failure("write " + tmp, errno);
  }
  if (std::rename(tmp.c_str(), path().c_str()) != 0) return Status::failure("rename " + tmp, errno);
  return Status();
}

}  // namespace arpguard
