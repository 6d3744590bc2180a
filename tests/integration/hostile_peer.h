// hostile_peer.py: the peers the hostile cases need and no stock tool plays
// (idle and trickling connections by the hundred, clients that hang up before
// their reply, exact bytes on a socket), written into a test's directory.
// Kept in a header so the suite finds it wherever it runs from.
#pragma once

#include <string>

#include "tests/support/netlab.h"

namespace arpguard::testing {

inline constexpr const char* kHostilePeerPy = R"PY(
"""Hostile peers of arpguardd.

  hold    --unix PATH | --tcp HOST:PORT  --count N [--trickle M --interval S]
          opens N connections that send nothing and M that send an HTTP request
          one byte every S seconds; prints "holding N+M" once all are connected,
          then holds them until killed.
  hangup  --unix PATH | --tcp HOST:PORT  --count N [--send TEXT] [--reset]
          N times: connect, send TEXT, close at once without reading (--reset:
          every other TCP one with an RST). Prints "hung up N".
  raw     --unix PATH | --tcp HOST:PORT  --send TEXT [--shut] [--timeout S]
          sends TEXT, optionally shuts its write side, and writes every byte of
          the reply to stdout until the peer closes; "<open after S s>" if it
          did not close within S seconds, "<reset>" if it reset.
TEXT takes Python escapes (\x00, \xff, \r\n) so that any byte can be sent.
"""
import argparse, select, socket, struct, sys, time


def connect(args):
    if args.unix:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args.unix)
        return s
    host, port = args.tcp.rsplit(":", 1)
    return socket.create_connection((host, int(port)))


def payload(text):
    return text.encode("latin-1").decode("unicode_escape").encode("latin-1")


def hold(args):
    idle = [connect(args) for _ in range(args.count)]
    request = b"GET /ready HTTP/1.1\r\nHost: arpguard\r\nUser-Agent: trickle\r\n\r\n"
    trickling = [[connect(args), 0] for _ in range(args.trickle)]
    print("holding", len(idle) + len(trickling), flush=True)
    while True:
        for t in trickling:
            try:
                t[0].send(request[t[1] % len(request):][:1])
                t[1] += 1
            except OSError:
                pass
        time.sleep(args.interval)


def hangup(args):
    for i in range(args.count):
        s = connect(args)
        if args.send:
            s.sendall(payload(args.send))
        if args.reset and args.tcp and i % 2 == 0:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    print("hung up", args.count, flush=True)


def raw(args):
    s = connect(args)
    s.sendall(payload(args.send))
    if args.shut:
        s.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + args.timeout
    out = sys.stdout.buffer
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            out.write(b"<open after %g s>" % args.timeout)
            break
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            out.write(b"<reset>")
            break
        if not data:
            break
        out.write(data)
    out.flush()


parser = argparse.ArgumentParser()
parser.add_argument("mode", choices=["hold", "hangup", "raw"])
parser.add_argument("--unix")
parser.add_argument("--tcp")
parser.add_argument("--count", type=int, default=1)
parser.add_argument("--trickle", type=int, default=0)
parser.add_argument("--interval", type=float, default=0.2)
parser.add_argument("--send", default="")
parser.add_argument("--reset", action="store_true")
parser.add_argument("--shut", action="store_true")
parser.add_argument("--timeout", type=float, default=3.0)
args = parser.parse_args()
{"hold": hold, "hangup": hangup, "raw": raw}[args.mode](args)
)PY";

/// Writes hostile_peer.py into `dir`; returns the command that runs it (Debian's python3).
inline std::string write_hostile_peer(const TempDir& dir) {
  return "/usr/bin/python3 " + dir.write("hostile_peer.py", kHostilePeerPy);
}

}  // namespace arpguard::testing
