#include "kernel/make_dirs.h"

#include <sys/stat.h>

#include <cerrno>

namespace arpguard {

Status make_dirs(const std::string& dir) {
  for (size_t slash = 1; slash != std::string::npos;) {
    slash = dir.find('/', slash + 1);
    const std::string prefix = dir.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return Status::failure("mkdir " + prefix, errno);
  }
  return Status();
}

}  // namespace arpguard
