#!/usr/bin/env python3
"""The lab's real-server application: HTTP on every local address (IPv4 and
IPv6, including addresses inside a local-route prefix) on one port; answers
"NAME ADDRESS" with the address the client asked for."""
import http.server
import socket
import sys

name, port = sys.argv[1], int(sys.argv[2])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        asked = self.connection.getsockname()[0]
        if asked.startswith("::ffff:"):
            asked = asked[len("::ffff:"):]
        body = f"{name} {asked}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class DualStack(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


DualStack(("::", port), Handler).serve_forever()
