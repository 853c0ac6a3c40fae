"""HTTPS transport: ThreadingHTTPServer, TLS handshake in the connection's own thread,
HTTP/1.1 keep-alive, request parsing, response writing and the connection-reset fault."""
import os
import socket
import ssl
import struct
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, unquote_plus, urlsplit

from .errors import GraphError
from .util import new_id

HANDSHAKE_TIMEOUT = 10
IDLE_TIMEOUT = 120


class Request:
    """One HTTP request as the simulator's handlers see it."""

    def __init__(self, method, raw_path, headers, body, base_url):
        self.method = method
        self.raw_path = raw_path
        split = urlsplit(raw_path)
        self.path = unquote(split.path)
        self.query = parse_query(split.query)
        self.headers = headers
        self.body = body
        self.base_url = base_url
        self.version = "v1.0"
        self.request_id = new_id()
        self.client_request_id = headers.get("client-request-id") or self.request_id
        self.note = {}
        self.op_fault = None   # an op_unsettled / op_lost fault taken by this request


def parse_query(text):
    """Query options by lower-cased name ($deltaToken == $deltatoken); '+' is a space."""
    out = {}
    for pair in filter(None, text.split("&")):
        name, _, value = pair.partition("=")
        out[unquote_plus(name).lower()] = unquote_plus(value)
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graphsim/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self):
        body = self._read_body()
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
        req = Request(self.command, self.path, self.headers, body, f"https://{host}")
        # which TLS connection carried it, and whether that one resumed a session
        req.note.update(conn=getattr(self.connection, "graphsim_conn", None),
                        tls_resumed=getattr(self.connection, "session_reused", None))
        try:
            resp = self.server.sim.handle(req)
        except Exception:  # a simulator bug must not kill the connection thread silently
            traceback.print_exc(file=sys.stderr)
            resp = GraphError(500, "generalException", "graphsim internal error").response(
                req.request_id, req.client_request_id)
        if resp.reset:
            if resp.cut:   # a client that got a byte cannot take it for a dead idle connection
                try:
                    self.wfile.write(b"HTTP/1.1 202 Accepted\r\n")
                    self.wfile.flush()
                except OSError:
                    pass
            self._reset_connection()
        else:
            self._send(req, resp)

    def _read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self):
        body = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass            # trailers
                return body
            body += self.rfile.read(size)
            self.rfile.readline()   # CRLF after the chunk

    def _send(self, req, resp):
        self.send_response(resp.status)
        headers = {"request-id": req.request_id, "client-request-id": req.client_request_id,
                   "Cache-Control": "no-cache", **resp.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        # the status line, the headers and the body in one write: one TLS record and
        # one segment where two cost the client a second wakeup
        self._headers_buffer.extend((b"\r\n", resp.body))
        self.flush_headers()

    def _reset_connection(self):
        """Drop the TCP connection with an RST, no HTTP response, no TLS close_notify."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            os.close(self.connection.detach())
        except OSError:
            pass

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        pass   # the request log (and --log) records requests


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, sim, ssl_context):
        self.sim = sim
        self.ssl_context = ssl_context
        self.conn_lock = threading.Lock()
        self.conn_count = 0
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        """TLS handshake here, in the connection's thread, not in the accept loop."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # nothing waits for an ACK
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with self.conn_lock:
            self.conn_count += 1
            tls.graphsim_conn = self.conn_count   # numbered in the request log ("conn")
        try:
            self.RequestHandlerClass(tls, client_address, self)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        traceback.print_exc(file=sys.stderr)


def make_ssl_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
