"""The sans-IO codec (gearman_gevent.packet): command table, pack_request,
the incremental Decoder, and the admin text-reply parsers.

No sockets here.  Admin reply bytes below were captured from Debian's gearmand
1.1.20 (see the literal ``GEARMAND_*`` constants), line endings untouched.
"""
from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gearman_gevent import packet as P
from gearman_gevent.exceptions import InvalidArgsError, ProtocolError, ServerError
from gearman_gevent.packet import (
    ARGC,
    COMMANDS,
    NUMS,
    REQ,
    RES,
    AdminReplyParser,
    Decoder,
    FunctionStatus,
    JobInfo,
    JobStatus,
    Packet,
    PriorityStatus,
    TextCommand,
    UniqueStatus,
    WorkerInfo,
    pack_request,
    pack_response,
    parse_ok,
    parse_prioritystatus,
    parse_show_jobs,
    parse_show_unique_jobs,
    parse_status,
    parse_status_res,
    parse_status_res_unique,
    parse_workers,
)

HEADER = struct.Struct(">4sII")

# The reference table, written out independently of the library: number ->
# (gearman-ruby name, argument count from libgearman's command.cc).  1-36 are
# gearman-ruby 4.0.2's names; 37-42 follow gearmand's PROTOCOL names.
EXPECTED = {
    1: ("can_do", 1),
    2: ("cant_do", 1),
    3: ("reset_abilities", 0),
    4: ("pre_sleep", 0),
    6: ("noop", 0),
    7: ("submit_job", 3),
    8: ("job_created", 1),
    9: ("grab_job", 0),
    10: ("no_job", 0),
    11: ("job_assign", 3),
    12: ("work_status", 3),
    13: ("work_complete", 2),
    14: ("work_fail", 1),
    15: ("get_status", 1),
    16: ("echo_req", 1),
    17: ("echo_res", 1),
    18: ("submit_job_bg", 3),
    19: ("error", 2),
    20: ("status_res", 5),
    21: ("submit_job_high", 3),
    22: ("set_client_id", 1),
    23: ("can_do_timeout", 2),
    24: ("all_yours", 0),
    25: ("work_exception", 2),
    26: ("option_req", 1),
    27: ("option_res", 1),
    28: ("work_data", 2),
    29: ("work_warning", 2),
    30: ("grab_job_uniq", 0),
    31: ("job_assign_uniq", 4),
    32: ("submit_job_high_bg", 3),
    33: ("submit_job_low", 3),
    34: ("submit_job_low_bg", 3),
    35: ("submit_job_sched", 8),
    36: ("submit_job_epoch", 4),
    37: ("submit_reduce_job", 4),
    38: ("submit_reduce_job_background", 4),
    39: ("grab_job_all", 0),
    40: ("job_assign_all", 5),
    41: ("get_status_unique", 1),
    42: ("status_res_unique", 6),
}
ALL_TYPES = sorted(EXPECTED)
# Single-argument packets whose argument is cut at a stray NUL (handle/name).
CUT_AT_NUL = {"job_created", "work_fail", "option_res"}

HYPO = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])


def header(magic, num, size):
    return HEADER.pack(magic, num, size)


def feed_all(decoder, chunks):
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def split_at(data, points):
    points = sorted(set(p for p in points if 0 < p < len(data)))
    chunks, prev = [], 0
    for p in points:
        chunks.append(data[prev:p])
        prev = p
    chunks.append(data[prev:])
    return chunks


# ---------------------------------------------------------------- strategies
nul_free = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))
payload = st.binary(max_size=300)


@st.composite
def packets(draw, types=tuple(ALL_TYPES)):
    """(type number, args) with valid args: only the last may hold NUL (and
    not even that for the types cut at a NUL)."""
    num = draw(st.sampled_from(types))
    name, argc = EXPECTED[num]
    if argc == 0:
        return num, ()
    args = [draw(nul_free) for _ in range(argc - 1)]
    args.append(draw(nul_free if name in CUT_AT_NUL else payload))
    return num, tuple(args)


@st.composite
def streams(draw, magic=RES, max_packets=12):
    pkts = draw(st.lists(packets(), min_size=1, max_size=max_packets))
    data = b"".join(P.pack(magic, num, *args) for num, args in pkts)
    points = draw(st.lists(st.integers(0, len(data)), max_size=30))
    return pkts, data, points


# ===================================================================== table
def test_command_table_matches_gearman_ruby_names():
    assert set(COMMANDS) == set(EXPECTED)  # 1..42 except the unused 5
    assert 5 not in COMMANDS
    for num, (name, argc) in EXPECTED.items():
        assert COMMANDS[num] == name
        assert NUMS[name] == num
        assert ARGC[num] == argc
    assert NUMS == {v: k for k, v in COMMANDS.items()}
    assert len(COMMANDS) == 41


def test_packet_name_and_data_properties():
    pkt = Packet(NUMS["work_complete"], (b"H:x:1", b"a\0b"))
    assert pkt.name == "work_complete"
    assert pkt.data == b"H:x:1\0a\0b"


# =============================================================== pack_request
@pytest.mark.parametrize("num", ALL_TYPES)
def test_pack_request_emits_exactly_argc_minus_1_nuls(num):
    name, argc = EXPECTED[num]
    args = [f"arg{i}".encode() for i in range(argc)]
    for pkt in (pack_request(name, *args), pack_request(num, *args)):
        magic, typ, size = HEADER.unpack(pkt[:12])
        body = pkt[12:]
        assert (magic, typ, size) == (REQ, num, len(body))
        assert body.count(b"\0") == max(argc - 1, 0)
        assert body == b"\0".join(args)
    assert pack_response(name, *args) == RES + pack_request(name, *args)[4:]


@pytest.mark.parametrize("name", ["submit_job", "submit_job_bg", "submit_job_high",
                                  "submit_job_high_bg", "submit_job_low", "submit_job_low_bg"])
def test_pack_request_empty_unique_keeps_both_separators(name):
    pkt = pack_request(name, "func", "", b"data")
    assert pkt[12:] == b"func\0\0data"
    assert HEADER.unpack(pkt[:12])[2] == len(b"func\0\0data")
    # ... and an empty payload still ends with the second separator.
    assert pack_request(name, b"f", b"", b"")[12:] == b"f\0\0"


def test_pack_request_all_empty_args():
    assert pack_request("submit_job_epoch", b"", b"", b"", b"")[12:] == b"\0\0\0"
    assert pack_request("echo_req", b"") == header(REQ, 16, 0)


@pytest.mark.parametrize("num", ALL_TYPES)
def test_pack_request_rejects_wrong_argument_counts(num):
    name, argc = EXPECTED[num]
    with pytest.raises(InvalidArgsError):
        pack_request(name, *([b"a"] * (argc + 1)))
    if argc:
        with pytest.raises(InvalidArgsError):
            pack_request(name, *([b"a"] * (argc - 1)))


@pytest.mark.parametrize("num", [n for n in ALL_TYPES if EXPECTED[n][1] >= 2])
def test_pack_request_rejects_nul_in_non_last_args_only(num):
    name, argc = EXPECTED[num]
    for i in range(argc - 1):
        args = [b"ok"] * argc
        args[i] = b"b\0d"
        with pytest.raises(InvalidArgsError):
            pack_request(name, *args)
    # NUL in the last argument is data.
    args = [b"ok"] * (argc - 1) + [b"\0\0data\0"]
    assert pack_request(name, *args).endswith(b"ok\0\0\0data\0")


def test_pack_request_accepts_str_bytes_bytearray_memoryview():
    expected = pack_request("submit_job", b"f\xc3\xa9", b"u", b"\x00\xff\x01")
    for conv in (bytes, bytearray, memoryview):
        assert pack_request("submit_job", conv(b"f\xc3\xa9"), conv(b"u"), conv(b"\x00\xff\x01")) == expected
    assert pack_request("submit_job", "fé", "u", b"\x00\xff\x01") == expected  # str -> UTF-8
    assert pack_request("echo_req", "€")[12:] == "€".encode()


@pytest.mark.parametrize("bad", [1, 1.5, None, ["x"], object()])
def test_pack_request_rejects_non_bytes_arguments(bad):
    with pytest.raises(InvalidArgsError):
        pack_request("echo_req", bad)


@pytest.mark.parametrize("command", ["nope", "", 5, 0, 43, -1, None, True])
def test_pack_request_rejects_unknown_commands(command):
    with pytest.raises(InvalidArgsError):
        pack_request(command)


def test_invalid_args_error_is_a_value_error():
    with pytest.raises(ValueError):
        pack_request("echo_req", b"a", b"b")


# ============================================================ Decoder basics
@pytest.mark.parametrize("num", ALL_TYPES)
def test_decoder_roundtrip_every_type_both_magics(num):
    name, argc = EXPECTED[num]
    args = [f"a{i}".encode() for i in range(argc)]
    if argc and name not in CUT_AT_NUL:
        args[-1] = bytes(range(256)) + b"\0\0"  # every byte value, NUL included
    for magic in (RES, REQ):
        wire = P.pack(magic, num, *args)
        out = Decoder(magic).feed(wire)
        assert out == [Packet(num, tuple(args))]
        assert out[0].name == name


@pytest.mark.parametrize("num", ALL_TYPES)
def test_decoder_byte_by_byte_body(num):
    """Header whole, body one byte per feed, next packet after it."""
    name, argc = EXPECTED[num]
    args = [b"x" * i for i in range(1, argc + 1)]
    wire = P.pack(RES, num, *args)
    d = Decoder()
    out = d.feed(wire[:12])
    assert len(out) == (0 if argc else 1)
    if argc:
        for i in range(12, len(wire)):
            assert d.buffered > 0
            out.extend(d.feed(wire[i:i + 1]))
    out.extend(d.feed(pack_response("noop")))
    assert out == [Packet(num, tuple(args)), Packet(NUMS["noop"], ())]
    assert d.buffered == 0


def test_decoder_many_packets_in_one_chunk_and_empty_feeds():
    wire = b"".join(pack_response("job_created", f"H:x:{i}") for i in range(500))
    d = Decoder()
    assert d.feed(b"") == []
    out = d.feed(wire)
    assert [p.args[0] for p in out] == [f"H:x:{i}".encode() for i in range(500)]
    assert d.feed(b"") == [] and d.buffered == 0


def test_decoder_accepts_bytearray_and_memoryview_chunks():
    wire = pack_response("work_complete", b"H:1", b"r\0s") * 2
    d = Decoder()
    out = d.feed(bytearray(wire[:20])) + d.feed(memoryview(wire)[20:])
    assert out == [Packet(13, (b"H:1", b"r\0s"))] * 2


@pytest.mark.parametrize("name", ["work_fail", "job_created", "option_res"])
def test_decoder_tolerates_trailing_nul_after_handle(name):
    # gearmand's converted WORK_FAIL is "handle\0" (PROTOCOL 1.7).
    wire = header(RES, NUMS[name], len(b"H:vm:12345\0")) + b"H:vm:12345\0"
    assert Decoder().feed(wire) == [Packet(NUMS[name], (b"H:vm:12345",))]


def test_decoder_splits_by_argc_so_data_keeps_its_nuls():
    body = b"H:1\0" + b"\0a\0\0b\0"
    wire = header(RES, NUMS["work_data"], len(body)) + body
    assert Decoder().feed(wire) == [Packet(NUMS["work_data"], (b"H:1", b"\0a\0\0b\0"))]
    body = b"H:1\0f\0u\0r\0\0d\0"
    wire = header(RES, NUMS["job_assign_all"], len(body)) + body
    assert Decoder().feed(wire)[0].args == (b"H:1", b"f", b"u", b"r", b"\0d\0")


def test_decoder_server_side_text_lines():
    d = Decoder(REQ, allow_text=True)
    stream = b"status\r\n" + pack_request("echo_req", b"x") + b"workers\n" + b"ver"
    out = d.feed(stream)
    assert out == [TextCommand(b"status"), Packet(16, (b"x",)), TextCommand(b"workers")]
    assert d.feed(b"sion\r\n") == [TextCommand(b"version")]


def test_decoder_text_line_too_long():
    d = Decoder(REQ, allow_text=True)
    with pytest.raises(ProtocolError):
        d.feed(b"a" * (P.MAX_TEXT_LINE + 2))


# ============================================================ Decoder errors
@pytest.mark.parametrize("wire", [
    b"HTTP/1.1 400 Bad Request\r\n\r\n",
    b"XRES" + struct.pack(">II", 17, 0),
    b"\0RSE" + struct.pack(">II", 17, 0),
    b"\0res" + struct.pack(">II", 17, 0),
    b"\0REQ" + struct.pack(">II", 17, 0),  # REQ magic on a client decoder
])
def test_decoder_bad_magic(wire):
    with pytest.raises(ProtocolError):
        Decoder(RES).feed(wire)


def test_decoder_res_magic_on_server_decoder():
    with pytest.raises(ProtocolError):
        Decoder(REQ).feed(pack_response("echo_res", b"x"))


@pytest.mark.parametrize("prefix", [b"X", b"\0X", b"\0RX", b"\0REX", b"\x01"])
def test_decoder_bad_magic_fails_before_the_header_is_complete(prefix):
    with pytest.raises(ProtocolError):
        Decoder(RES).feed(prefix)


@pytest.mark.parametrize("num", [0, 5, 43, 99, 2 ** 31, 2 ** 32 - 1])
def test_decoder_unknown_type(num):
    with pytest.raises(ProtocolError):
        Decoder().feed(header(RES, num, 0))


@pytest.mark.parametrize("name,body", [
    ("status_res", b"H:1\0" + b"1\0" + b"0"),
    ("status_res_unique", b"u\0" + b"1\0" * 3 + b"1"),
    ("job_assign", b"H:1\0func"),
    ("job_assign_uniq", b"H:1\0f\0u"),
    ("job_assign_all", b"H:1\0f\0u\0r"),
    ("work_complete", b"H:1"),
    ("error", b"JUST_A_CODE"),
    ("work_status", b"H:1\0" + b"5"),
])
def test_decoder_too_few_arguments(name, body):
    with pytest.raises(ProtocolError):
        Decoder().feed(header(RES, NUMS[name], len(body)) + body)


def test_decoder_length_cap_default_is_64_mib():
    assert P.DEFAULT_MAX_PACKET_SIZE == 64 * 1024 * 1024
    assert Decoder().max_packet_size == 64 * 1024 * 1024


def test_decoder_2gib_header_raises_at_once_without_allocating():
    tracemalloc.start()
    try:
        d = Decoder()
        with pytest.raises(ProtocolError):
            d.feed(header(RES, NUMS["echo_res"], 2 ** 31))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_decoder_2gib_header_rejected_even_with_body_bytes_following():
    with pytest.raises(ProtocolError):
        Decoder().feed(header(RES, NUMS["work_data"], 2 ** 32 - 1) + b"H:1\0" + b"x" * 1000)


def test_decoder_length_cap_is_configurable():
    cap = 1000
    ok = header(RES, NUMS["echo_res"], cap) + b"x" * cap
    assert Decoder(RES, max_packet_size=cap).feed(ok) == [Packet(17, (b"x" * cap,))]
    with pytest.raises(ProtocolError):
        Decoder(RES, max_packet_size=cap).feed(header(RES, NUMS["echo_res"], cap + 1))
    with pytest.raises(ProtocolError):
        Decoder(RES, max_packet_size=0).feed(header(RES, NUMS["echo_res"], 1))
    assert Decoder(RES, max_packet_size=0).feed(pack_response("noop")) == [Packet(6, ())]


@pytest.mark.parametrize("kwargs", [{"magic": b"\0FOO"}, {"max_packet_size": -1},
                                    {"max_packet_size": 1.5}])
def test_decoder_rejects_bad_settings(kwargs):
    with pytest.raises(InvalidArgsError):
        Decoder(**kwargs)


# ============================================== Decoder sizes and chunking
SIZES = sorted({base + delta for base in (4096, 8192, 16384, 65536)
                for delta in (-13, -12, -3, -1, 0, 1, 3, 12, 13)})


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [1000, 4096, 8192, 65536])
def test_decoder_sizes_around_buffer_edges(size, chunk):
    data = bytes(i % 251 for i in range(size))
    first = pack_response("work_complete", b"H:vm:1", data)
    second = pack_response("echo_res", b"after")
    d = Decoder()
    out = d.feed(first[:12])  # header whole, then the body in chunks
    for i in range(12, len(first), chunk):
        out.extend(d.feed(first[i:i + chunk]))
    assert out == [Packet(13, (b"H:vm:1", data))]
    assert d.buffered == 0
    assert d.feed(second) == [Packet(17, (b"after",))]


@pytest.mark.parametrize("size", [65536 - 20, 65536 - 12, 65536 - 11, 65536 + 100])
def test_decoder_large_packet_with_neighbours_in_the_same_chunks(size):
    """The large-packet path collects chunks; packets before and after it in
    the same chunks must still come out, in order."""
    big = pack_response("work_data", b"H:1", b"\0" * size)
    small = pack_response("job_created", b"H:2")
    stream = small + big + small
    cut1 = len(small) + 12 + 100  # inside big's body
    cut2 = len(small) + len(big) + 2  # inside the trailing packet's magic
    d = Decoder()
    out = feed_all(d, [stream[:cut1], stream[cut1:cut2], stream[cut2:]])
    assert [p.name for p in out] == ["job_created", "work_data", "job_created"]
    assert out[1].args[1] == b"\0" * size
    assert d.buffered == 0


def test_decoder_8_mib_packet_whole_and_in_chunks():
    data = bytes(range(256)) * (8 * 1024 * 1024 // 256)
    wire = pack_response("work_complete", b"H:vm:8", data)
    assert Decoder().feed(wire) == [Packet(13, (b"H:vm:8", data))]
    d = Decoder()
    out = d.feed(wire[:12])
    step = 256 * 1024 + 7
    for i in range(12, len(wire), step):
        assert not out
        out.extend(d.feed(wire[i:i + step]))
    assert out == [Packet(13, (b"H:vm:8", data))]
    assert d.buffered == 0


@HYPO
@given(streams())
def test_decoder_roundtrip_random_splits(stream):
    """Any type, any payload bytes, many packets per chunk, random chunk
    boundaries (headers included)."""
    pkts, data, points = stream
    d = Decoder()
    out = feed_all(d, split_at(data, points))
    assert [(p.type, p.args) for p in out] == list(pkts)
    assert d.buffered == 0


@HYPO
@given(streams(magic=REQ))
def test_decoder_roundtrip_requests_server_side(stream):
    pkts, data, points = stream
    d = Decoder(REQ, allow_text=True)
    out = feed_all(d, split_at(data, points))
    assert [(p.type, p.args) for p in out] == list(pkts)


# ---- header split across reads ------------------------------------------


def _split_header_roundtrip(cut):
    wire = pack_response("echo_res", b"hello") + pack_response("noop")
    d = Decoder()
    out = d.feed(wire[:cut])
    assert out == []
    out += d.feed(wire[cut:])
    assert out == [Packet(17, (b"hello",)), Packet(6, ())]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 12, 13])
def test_decoder_header_split_inside_magic_or_after_header(cut):
    _split_header_roundtrip(cut)


@pytest.mark.parametrize("cut", range(5, 12))
def test_decoder_header_split_inside_type_or_length(cut):
    _split_header_roundtrip(cut)


def test_decoder_byte_by_byte_whole_stream():
    wire = b"".join(P.pack(RES, n, *([b"v"] * EXPECTED[n][1])) for n in ALL_TYPES)
    d = Decoder()
    out = feed_all(d, [wire[i:i + 1] for i in range(len(wire))])
    assert [p.type for p in out] == ALL_TYPES


    assert d.buffered == 0


# ======================================================================= fuzz
FUZZ_CAP = 2048


@st.composite
def hostile_streams(draw):
    """Byte soup built from plausible and implausible pieces."""
    pieces = draw(st.lists(st.one_of(
        st.binary(max_size=64),  # raw garbage
        packets().map(lambda p: P.pack(RES, p[0], *p[1])),  # valid packets
        packets().map(lambda p: P.pack(RES, p[0], *p[1])).flatmap(  # truncated packets
            lambda w: st.integers(0, len(w)).map(lambda n: w[:n])),
        st.tuples(st.sampled_from([RES, REQ, b"\0RE", b"\0\0\0\0"]),
                  st.integers(0, 50), st.integers(0, 2 ** 32 - 1)).map(
            lambda t: t[0] + struct.pack(">II", t[1], t[2])),  # headers, any size
        st.tuples(st.integers(0, 50), st.integers(0, FUZZ_CAP + 20)).map(
            lambda t: header(RES, t[0], t[1])),  # headers near the cap
    ), max_size=12))
    data = b"".join(pieces)
    points = draw(st.lists(st.integers(0, max(len(data), 1)), max_size=20))
    return split_at(data, points)


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_streams())
def test_fuzz_decoder_raises_only_protocol_error_and_stays_bounded(chunks):
    d = Decoder(RES, max_packet_size=FUZZ_CAP)
    for chunk in chunks:
        try:
            out = d.feed(chunk)
        except ProtocolError:
            return
        for pkt in out:
            assert isinstance(pkt, Packet)
            assert pkt.type in EXPECTED
            assert len(pkt.args) == EXPECTED[pkt.type][1]
            assert all(isinstance(a, bytes) for a in pkt.args)
            assert sum(map(len, pkt.args)) <= FUZZ_CAP
        assert d.buffered <= FUZZ_CAP + 12


@settings(deadline=None, max_examples=300)
@given(st.binary(min_size=1, max_size=200), st.lists(st.integers(0, 200), max_size=10))
def test_fuzz_pure_random_bytes(data, points):
    d = Decoder(RES, max_packet_size=FUZZ_CAP)
    try:
        for chunk in split_at(data, points):
            d.feed(chunk)
            assert d.buffered <= FUZZ_CAP + 12
    except ProtocolError:
        pass


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=10))
def test_fuzz_server_side_decoder_with_text(data, points):
    d = Decoder(REQ, max_packet_size=FUZZ_CAP, allow_text=True)
    try:
        for chunk in split_at(data, points):
            for item in d.feed(chunk):
                assert isinstance(item, (Packet, TextCommand))
            assert d.buffered <= max(FUZZ_CAP + 12, P.MAX_TEXT_LINE + 300)
    except ProtocolError:
        pass


# ============================================================ STATUS_RES args
def test_parse_status_res_and_unique():
    assert parse_status_res([b"H:1", b"1", b"0", b"3", b"10"]) == JobStatus(True, False, 3, 10)
    assert parse_status_res([b"H:1", b"0", b"0", b"0", b"0"]) == JobStatus(False, False, 0, 0)
    assert parse_status_res_unique([b"u", b"1", b"1", b"0", b"0", b"2"]) == UniqueStatus(True, True, 0, 0, 2)
    with pytest.raises(ProtocolError):
        parse_status_res([b"H:1", b"1", b"1", b"x", b"1"])


# ====================================================== admin text replies
# Captured from gearmand 1.1.20 (Debian), after a worker "worker-1" registered
# upper+reverse and three background jobs were queued.
GEARMAND_STATUS = b"upper\t1\t0\t1\nreverse\t2\t0\t1\n.\n"
GEARMAND_WORKERS = b"27 127.0.0.1 - :\n25 127.0.0.1 - :\n26 127.0.0.1 worker-1 : upper reverse\n.\n"
GEARMAND_SHOW_JOBS = b"H:vm:1\t0\t0\t1\nH:vm:2\t0\t0\t1\nH:vm:3\t0\t0\t1\n.\n"
GEARMAND_SHOW_UNIQUE = b"\nu-1\nu-2\n.\n"  # the first job has an empty unique
GEARMAND_PRIORITYSTATUS = b"upper\t1\t0\t0\t1\nreverse\t0\t1\t1\t1\n.\n"
GEARMAND_VERSION = b"OK 1.1.20+ds\n"
GEARMAND_GETPID = b"OK 8733\n"
GEARMAND_VERBOSE = b"OK WARNING\n"
GEARMAND_MAXQUEUE = b"OK\r\n"
GEARMAND_MAXQUEUE_BARE = (b"ERR INVALID_ARGUMENTS An+incomplete+set+of+arguments"
                          b"+was+sent+to+this+command+maxqueue\r\n")
GEARMAND_CANCEL_UNKNOWN = b"ERR UNKNOWN_JOB\r\n"
GEARMAND_SHUTDOWN = b"ERR UNKNOWN_COMMAND Unknown+server+commandshutdown\r\n"
GEARMAND_DROP_BUSY = b"ERR there are still connected workers or executing clients\r\n"
GEARMAND_EMPTY_LIST = b".\n"


def parse_reply(data, list_reply, chunk=None):
    parser = AdminReplyParser(list_reply)
    if chunk is None:
        return parser.feed(data), parser
    result = None
    for i in range(0, len(data), chunk):
        assert result is None, "reply complete before all bytes were fed"
        result = parser.feed(data[i:i + chunk])
    return result, parser


@pytest.mark.parametrize("chunk", [None, 1, 2, 7])
def test_admin_parser_list_reply_in_any_chunks(chunk):
    lines, parser = parse_reply(GEARMAND_STATUS, True, chunk)
    assert lines == ["upper\t1\t0\t1", "reverse\t2\t0\t1"]
    assert parser.rest == b""


def test_admin_parser_incomplete_returns_none():
    parser = AdminReplyParser(True)
    assert parser.feed(GEARMAND_STATUS[:-2]) is None
    assert parser.feed(b".") is None
    assert parser.feed(b"\n") == ["upper\t1\t0\t1", "reverse\t2\t0\t1"]
    single = AdminReplyParser(False)
    assert single.feed(b"OK\r") is None
    assert single.feed(b"\n") == ["OK"]


@pytest.mark.parametrize("data,expected", [
    (GEARMAND_MAXQUEUE, ["OK"]),  # \r\n
    (GEARMAND_VERSION, ["OK 1.1.20+ds"]),  # \n
    (GEARMAND_CANCEL_UNKNOWN, ["ERR UNKNOWN_JOB"]),
])
def test_admin_parser_single_line_mixed_endings(data, expected):
    for chunk in (None, 1):
        lines, _ = parse_reply(data, False, chunk)
        assert lines == expected


def test_admin_parser_err_on_a_list_command_is_one_line():
    lines, parser = parse_reply(GEARMAND_SHUTDOWN + GEARMAND_STATUS, True)
    assert lines == ["ERR UNKNOWN_COMMAND Unknown+server+commandshutdown"]
    assert parser.rest == GEARMAND_STATUS
    with pytest.raises(ServerError) as info:
        parse_status(lines)
    assert info.value.code == "UNKNOWN_COMMAND"
    assert info.value.text == "Unknown server commandshutdown"


def test_admin_parser_back_to_back_replies_keep_the_rest():
    stream = GEARMAND_MAXQUEUE + GEARMAND_STATUS + GEARMAND_VERSION
    first = AdminReplyParser(False)
    assert first.feed(stream) == ["OK"]
    second = AdminReplyParser(True)
    assert second.feed(first.rest) == ["upper\t1\t0\t1", "reverse\t2\t0\t1"]
    third = AdminReplyParser(False)
    assert third.feed(second.rest) == ["OK 1.1.20+ds"]
    assert third.rest == b""


def test_admin_parser_size_cap():
    parser = AdminReplyParser(True, max_size=100)
    with pytest.raises(ProtocolError):
        parser.feed(b"x" * 200)


def test_admin_empty_list():
    lines, _ = parse_reply(GEARMAND_EMPTY_LIST, True)
    assert lines == []
    assert parse_status(lines) == {}
    assert parse_workers(lines) == []
    assert parse_show_jobs(lines) == []


def test_parse_status_captured():
    lines, _ = parse_reply(GEARMAND_STATUS, True)
    assert parse_status(lines) == {
        "upper": FunctionStatus(1, 0, 1),
        "reverse": FunctionStatus(2, 0, 1),
    }


def test_parse_status_bad_lines():
    with pytest.raises(ProtocolError):
        parse_status(["upper\t1\t0"])
    with pytest.raises(ProtocolError):
        parse_status(["upper\tx\t0\t1"])


def test_parse_prioritystatus_captured():
    lines, _ = parse_reply(GEARMAND_PRIORITYSTATUS, True)
    assert parse_prioritystatus(lines) == {
        "upper": PriorityStatus(1, 0, 0, 1),
        "reverse": PriorityStatus(0, 1, 1, 1),
    }


def test_parse_workers_captured_including_client_lines():
    lines, _ = parse_reply(GEARMAND_WORKERS, True, 5)
    assert parse_workers(lines) == [
        WorkerInfo(27, "127.0.0.1", "-", []),
        WorkerInfo(25, "127.0.0.1", "-", []),
        WorkerInfo(26, "127.0.0.1", "worker-1", ["upper", "reverse"]),
    ]


def test_parse_workers_bad_line():
    with pytest.raises(ProtocolError):
        parse_workers(["garbage"])
    with pytest.raises(ProtocolError):
        parse_workers(["x 127.0.0.1 - :"])


def test_parse_show_jobs_captured():
    lines, _ = parse_reply(GEARMAND_SHOW_JOBS, True)
    assert parse_show_jobs(lines) == [
        JobInfo("H:vm:1", 0, False, True),
        JobInfo("H:vm:2", 0, False, True),
        JobInfo("H:vm:3", 0, False, True),
    ]
    with pytest.raises(ProtocolError):
        parse_show_jobs(["H:vm:1\t0\t0"])


def test_parse_show_unique_jobs_captured_skips_empty_unique():
    lines, _ = parse_reply(GEARMAND_SHOW_UNIQUE, True)
    assert lines == ["", "u-1", "u-2"]
    assert parse_show_unique_jobs(lines) == ["u-1", "u-2"]


@pytest.mark.parametrize("data,expected", [
    (GEARMAND_MAXQUEUE, ""),
    (GEARMAND_VERSION, "1.1.20+ds"),
    (GEARMAND_GETPID, "8733"),
    (GEARMAND_VERBOSE, "WARNING"),
])
def test_parse_ok_captured(data, expected):
    lines, _ = parse_reply(data, False)
    assert parse_ok(lines) == expected


@pytest.mark.parametrize("data,code,text", [
    (GEARMAND_MAXQUEUE_BARE, "INVALID_ARGUMENTS",
     "An incomplete set of arguments was sent to this command maxqueue"),
    (GEARMAND_CANCEL_UNKNOWN, "UNKNOWN_JOB", ""),
    (GEARMAND_SHUTDOWN, "UNKNOWN_COMMAND", "Unknown server commandshutdown"),
])
def test_parse_ok_err_lines_raise_server_error(data, code, text):
    lines, _ = parse_reply(data, False)
    with pytest.raises(ServerError) as info:
        parse_ok(lines)
    assert (info.value.code, info.value.text) == (code, text)


def test_parse_ok_err_without_code_format():
    # gearmand's drop-function errors are free text, not CODE + text.
    lines, _ = parse_reply(GEARMAND_DROP_BUSY, False)
    with pytest.raises(ServerError) as info:
        parse_ok(lines)
    assert "connected workers" in str(info.value)


def test_parse_ok_rejects_unexpected_lines():
    for lines in (["WHAT"], [""], [], ["OKAY"]):
        with pytest.raises(ProtocolError):
            parse_ok(lines)


@pytest.mark.parametrize("parser", [parse_status, parse_workers, parse_show_jobs,
                                    parse_show_unique_jobs, parse_prioritystatus])
def test_list_parsers_raise_server_error_for_err(parser):
    with pytest.raises(ServerError) as info:
        parser(["ERR UNKNOWN_COMMAND Unknown+server+command"])
    assert info.value.code == "UNKNOWN_COMMAND"
    assert info.value.text == "Unknown server command"


def test_server_error_carries_code_and_text():
    err = ServerError("QUEUE_ERROR", "Job queue is full", "127.0.0.1:1")
    assert (err.code, err.text, err.server) == ("QUEUE_ERROR", "Job queue is full", "127.0.0.1:1")
    assert "QUEUE_ERROR" in str(err) and "127.0.0.1:1" in str(err)
