// Sending gathered netlink messages to the kernel in one datagram.
#pragma once

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <vector>

namespace arpguard {

/// Sends the messages of `iov` to the kernel as one datagram (the kernel
/// handles them in order inside the call); retried on EINTR. sendmsg's result.
inline ssize_t send_to_kernel(int fd, const std::vector<iovec>& iov) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof(kernel);
  msg.msg_iov = const_cast<iovec*>(iov.data());
  msg.msg_iovlen = iov.size();
  for (;;) {
    const ssize_t sent = ::sendmsg(fd, &msg, 0);
    if (sent >= 0 || errno != EINTR) return sent;
  }
}

}  // namespace arpguard
