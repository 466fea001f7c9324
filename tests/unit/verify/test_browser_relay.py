"""The relay that lets the browser reach an origin locked down to Cloudflare's
ranges: Chromium connects to a loopback port, the origin sees the edge address.

Real sockets on loopback (all of 127.0.0.0/8 is this machine on Linux)."""

import socket
import threading

from jupyterfab.verify.browser import _Relay

EDGE = "127.0.0.3"   # stands in for an address inside Cloudflare's ranges


def test_the_origin_sees_the_edge_address_and_bytes_pass_both_ways_unchanged():
    seen = {}
    with socket.create_server(("127.0.0.1", 0)) as origin:
        origin.settimeout(10)

        def answer():
            conn, peer = origin.accept()
            with conn:
                seen["peer"] = peer[0]
                seen["got"] = conn.recv(100)
                conn.sendall(b"\x00\xffreply")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        relay = _Relay("127.0.0.1", origin.getsockname()[1], EDGE)
        try:
            host, port = relay.endpoint.split(":")
            with socket.create_connection((host, int(port)), timeout=10) as browser:
                browser.sendall(b"\x16\x03\x01hello")   # e.g. a TLS ClientHello: passed as is
                reply = browser.recv(100)
        finally:
            relay.close()
        thread.join(timeout=10)
    assert seen == {"peer": EDGE, "got": b"\x16\x03\x01hello"}
    assert reply == b"\x00\xffreply"


def test_an_origin_that_cannot_be_reached_closes_the_browser_side():
    # Bound but not listening: connecting is refused, and while it stays bound no other
    # socket (the relay's own listener, say) can take the port, as a freed port could be.
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        relay = _Relay("127.0.0.1", refusing.getsockname()[1], EDGE)
        try:
            host, lport = relay.endpoint.split(":")
            with socket.create_connection((host, int(lport)), timeout=10) as browser:
                assert browser.recv(100) == b""   # closed, not hanging
        finally:
            relay.close()
