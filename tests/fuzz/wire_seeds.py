#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_wire.cpp into tests/fuzz/wire-seeds/ (committed; run
again after changing it). Each seed is an input as fuzz_wire.cpp reads it: a count K, K piece
selectors, then a client's bytes: websocket frames as a client sends them (RFC 6455 5.2), most
carrying meshrun.1 frames (docs/delivery.md)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "wire-seeds")
KEY = b"\x11\x22\x33\x44"


def frame(opcode, payload=b"", fin=True, masked=True, length_bytes=None):
    """A frame in the shortest length encoding, or in `length_bytes` (0, 2 or 8) extra bytes."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    mask_bit = 0x80 if masked else 0
    if length_bytes == 0:
        head += bytes([mask_bit | n])
    elif length_bytes == 2:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def text(s, **kw):
    return frame(0x1, s.encode() if isinstance(s, str) else s, **kw)


def seed(name, stream, selectors=b""):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([len(selectors)]) + selectors + stream)


def main():
    os.makedirs(OUT, exist_ok=True)
    for old in os.listdir(OUT):
        os.remove(os.path.join(OUT, old))
    session = (text("m 1 on") + text("m 2 off") + frame(0x9, b"ping") + text("r 2 off") + text("m 3 ")
               + frame(0xA) + text("m 4 {\"v\": 1}") + frame(0x8, b"\x03\xe8bye"))
    # A meshrun.1 session whole, then in pieces of 1, 2+take, 3, the rest.
    seed("session-whole", session)
    seed("session-pieces", session, bytes([0x00, 0x81, 0x02, 0x7f]))
    seed("session-bytewise-take", session, bytes([0x80]))
    # A message in fragments with a pong between them; an empty one; a binary one.
    fragments = (text("m 5 fir", fin=False) + frame(0xA, b"p") + frame(0x0, b"st ha", fin=False)
                 + frame(0x0, b"lf") + text("") + frame(0x2, b"\x00\x01"))
    seed("fragments", fragments, bytes([0x04, 0x8f]))
    # Lengths: 16-bit, the largest 7-bit, a short one written long (Beast refuses it; it counts),
    # unmasked, reserved opcodes, then a 64-bit length that never arrives.
    lengths = (text("m 6 " + "x" * 122) + text("r 7 " + "y" * 121) + text("a 8 z", length_bytes=8)
               + text("m 9 u", masked=False) + frame(0x3, b"r") + frame(0xB, b"c")
               + bytes([0x81, 0xFF]) + struct.pack(">Q", 1 << 40) + KEY + b"tail")
    seed("lengths", lengths, bytes([0x0d, 0x7e, 0x83]))
    # A header cut at each point, then the rest.
    seed("cut-head", text("m 10 " + "w" * 200), bytes([0x00, 0x00, 0x01, 0x7f]))
    # Plain websocket (no subprotocol): any text.
    seed("plain", text("hello") + text("1") + text("m x") + text("  "))
    # Near misses of meshrun.1, as payloads: what parse_numbered must refuse, and what it takes.
    misses = ["m 0 x", "m 01 x", "m 1x", "m  1 x", "m 1", "m -1 x", "x 1 y", "m\t1 y", "M 1 y",
              "a 9999999999999999999 ok", "a 10000000000000000000 no", "m 18446744073709551615 max",
              "r 18446744073709551616 over", "m 1 ", "a 42 a 43 b"]
    seed("near-misses", b"".join(text(m) for m in misses))
    # The stream as one payload, and as the parts of one (kind, 8 bytes of seq, body).
    seed("payload", b"m 123 hello")
    seed("parts-small", bytes([0x01 | (56 << 2)]) + struct.pack(">Q", 7 << 56) + b"body")
    seed("parts-large", bytes([0x02]) + struct.pack(">Q", 9_999_999_999_999_999_999) + b" 1 2")


if __name__ == "__main__":
    main()
