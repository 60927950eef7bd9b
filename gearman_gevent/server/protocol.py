"""Request-side framing for the embedded job server.

:class:`RequestDecoder` is :class:`gearman_gevent.packet.Decoder` as a server
needs it: binary requests and admin text lines mixed on one stream, and a
packet that carries the *response* magic is returned as :class:`BadMagic`
instead of ending the stream, because gearmand answers it with
``ERROR INVALID_MAGIC`` and keeps the connection.  Everything else (unknown
type, garbage magic, oversize body) raises
:class:`~gearman_gevent.exceptions.ProtocolError` and the connection is
dropped, as gearmand does.
"""
from __future__ import annotations

from typing import Union

from ..packet import (
    DEFAULT_MAX_PACKET_SIZE,
    HEADER,
    REQ,
    RES,
    Decoder,
    Packet,
    TextCommand,
    WrongMagic,
)

__all__ = ["BadMagic", "RequestDecoder", "response"]

_pack_header = HEADER.pack


#: A request that arrived with the response magic (see the module docstring).
BadMagic = WrongMagic

Item = Union[Packet, TextCommand, WrongMagic]


def response(num: int, body: bytes = b"") -> bytes:
    """One ``\\0RES`` packet of type *num* whose body is *body* (already joined)."""
    return _pack_header(RES, num, len(body)) + body


def RequestDecoder(max_packet_size: int = DEFAULT_MAX_PACKET_SIZE) -> Decoder:
    """The incremental decoder for what clients, workers and admins send a
    server: REQ packets, admin text lines, and RES packets as
    :class:`BadMagic`."""
    return Decoder(REQ, max_packet_size, allow_text=True, tolerate_magic=True)
