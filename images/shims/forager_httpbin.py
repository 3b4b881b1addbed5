"""forager shim: a local httpbin that answers plain HTTP and HTTPS on the same port.

Old requests suites build every URL from HTTPBIN_URL (forager points it at this server on
127.0.0.1) and some of them (test_mixed_case_scheme_acceptable) request the same host:port with
both `http://` and `https://`, as httpbin.org allows. This serves Debian's httpbin WSGI app
(python3-httpbin) on one port; a connection whose first byte is a TLS handshake (0x16) is
wrapped in TLS with a certificate for 127.0.0.1 / localhost issued by a local CA (made with
openssl at image build) that the image build added to the system trust store (Debian's certifi and requests' `certs.where()` read
/etc/ssl/certs/ca-certificates.crt). Nothing leaves the container.

    python3 forager_httpbin.py --make-ca DIR          # at image build: CA + server cert into DIR
    python3 forager_httpbin.py DIR HOST PORT          # at eval time
"""
import os
import socket
import socketserver
import ssl
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def make_ca(directory):
    import subprocess

    os.makedirs(directory, exist_ok=True)

    def run(*args):
        subprocess.run(["openssl", *args], check=True, cwd=directory, stdout=subprocess.DEVNULL)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "36500", "-subj",
        "/O=forager local httpbin CA/CN=forager local httpbin CA", "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    # DNS:127.0.0.1 as well as IP:127.0.0.1: old urllib3's vendored match_hostname reads only
    # dNSName entries; Python's own check reads iPAddress ones.
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:127.0.0.1,IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "36500", "-extfile", "san.ext", "-out", "server.crt")
    with open(os.path.join(directory, "server.pem"), "w") as out:
        for name in ("server.key", "server.crt", "ca.crt"):
            with open(os.path.join(directory, name)) as f:
                out.write(f.read())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        sys.stderr.write("%s - %s\n" % (self.address_string(), format % args))


class DualServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    context = None

    def process_request_thread(self, request, client_address):
        # Decide per connection, in the worker thread: TLS handshake or plain HTTP.
        try:
            request.settimeout(30)
            first = request.recv(1, socket.MSG_PEEK)
            if first == b"\x16":
                request = self.context.wrap_socket(request, server_side=True)
            request.settimeout(None)
        except (OSError, ssl.SSLError):
            self.shutdown_request(request)
            return
        super().process_request_thread(request, client_address)


def serve(directory, host, port):
    from httpbin import app

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(directory, "server.pem"))
    server = make_server(host, int(port), app, server_class=DualServer, handler_class=_QuietHandler)
    server.context = ctx
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "--make-ca":
        make_ca(sys.argv[2])
    else:
        serve(sys.argv[1], sys.argv[2], sys.argv[3])
