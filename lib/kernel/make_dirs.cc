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
  // Something else by that name (a file) is no directory to write in.
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::failure("stat " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::failure("mkdir " + dir, ENOTDIR);
  return Status();
}

}  // namespace arpguard
