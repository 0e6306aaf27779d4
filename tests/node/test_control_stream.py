"""A download over the control socket: the daemon sends DataChunk frames split at their
data, the client streams the data to its sink as it arrives; both sides keep the bytes
of the older, whole-frame form, so older clients and daemons read them (issue 17)."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgpack
import pytest
import trio

from node.control.address import control_path, socket_address
from node.control.client import ControlClient, ControlFailed, call
from node.control.server import SPLIT_DATA, ControlStream
from protocol.control.commands import Get
from protocol.control.frames import MAX_CONTROL_FRAME
from protocol.control.replies import DataChunk, Done, ErrorReply, GetHeader, encode_reply
from protocol.net.wire import encode_frame

RECORD = bytes(range(32))
MIB = 1024 * 1024


class Pieces:
    """A sink that keeps what it is given, piece by piece (copied: the client reuses)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


@contextmanager
def scripted_daemon(tmp_path: Path, script: Callable[[socket.socket], None]) -> Iterator[Path]:
    """A control socket whose one connection gets `script` (it reads the request first)."""
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket_address(control_path(data_dir)) as address:
        listener.bind(address)
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)  # the request
            script(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield data_dir
    finally:
        thread.join(timeout=30)
        listener.close()


def sends(*frames: bytes) -> Callable[[socket.socket], None]:
    return lambda connection: connection.sendall(b"".join(frames))


def download(data_dir: Path, decrypt: Callable[[int, bytes], bytes] | None = None) -> Pieces:
    sink = Pieces()
    with ControlClient(data_dir) as client:
        client.request(Get(RECORD, None), GetHeader)
        client.download(sink, decrypt)  # type: ignore[arg-type]
    return sink


HEADER = encode_reply(GetHeader(2 * MIB + 3, 3, filename="", content_type=""))
SEGMENTS = [os.urandom(MIB), os.urandom(MIB), b"end"]


def test_whole_frames_of_an_older_daemon_are_streamed_to_the_sink(tmp_path: Path) -> None:
    frames = [encode_reply(DataChunk(i, s)) for i, s in enumerate(SEGMENTS)]
    with scripted_daemon(tmp_path, sends(HEADER, *frames, encode_reply(Done()))) as data_dir:
        sink = download(data_dir)
    assert sink.data == b"".join(SEGMENTS)
    # Streamed as received: never the megabyte assembled and handed over in one piece.
    assert len(sink.pieces) > len(SEGMENTS)
    assert max(len(p) for p in sink.pieces) < MIB


def test_a_data_chunk_in_another_encoding_is_read_by_the_full_decoder(tmp_path: Path) -> None:
    """Valid msgpack the fast path does not know (keys in another order) is still read."""
    other = encode_frame(
        msgpack.packb(["data", {"data": b"abc", "segment": 0}], use_bin_type=True),
        MAX_CONTROL_FRAME,
    )
    with scripted_daemon(tmp_path, sends(HEADER, other, encode_reply(Done()))) as data_dir:
        assert download(data_dir).data == b"abc"


def test_decrypting_reads_whole_chunks(tmp_path: Path) -> None:
    frames = [encode_reply(DataChunk(i, s)) for i, s in enumerate(SEGMENTS)]
    seen: list[tuple[int, int]] = []

    def decrypt(segment: int, data: bytes) -> bytes:
        seen.append((segment, len(data)))
        return data[:1]

    with scripted_daemon(tmp_path, sends(HEADER, *frames, encode_reply(Done()))) as data_dir:
        sink = download(data_dir, decrypt)
    assert seen == [(0, MIB), (1, MIB), (2, 3)]
    assert sink.data == SEGMENTS[0][:1] + SEGMENTS[1][:1] + b"e"


def test_a_segment_out_of_order_fails_the_download(tmp_path: Path) -> None:
    frame = encode_reply(DataChunk(1, os.urandom(SPLIT_DATA)))
    with (
        scripted_daemon(tmp_path, sends(HEADER, frame)) as data_dir,
        pytest.raises(ControlFailed, match="segment 1 arrived, 0 expected"),
    ):
        download(data_dir)


def test_a_daemon_stopping_mid_data_fails_the_download(tmp_path: Path) -> None:
    frame = encode_reply(DataChunk(0, os.urandom(MIB)))
    with (
        scripted_daemon(tmp_path, sends(HEADER, frame[: MIB // 2])) as data_dir,
        pytest.raises(ControlFailed, match="closed the connection"),
    ):
        download(data_dir)


def test_an_error_inside_a_download_is_reported(tmp_path: Path) -> None:
    with (
        scripted_daemon(tmp_path, sends(HEADER, encode_reply(ErrorReply("disk")))) as data_dir,
        pytest.raises(ControlFailed, match="disk"),
    ):
        download(data_dir)


@pytest.mark.parametrize("size", [0, MAX_CONTROL_FRAME + 1])
def test_a_frame_size_out_of_bounds_is_a_bad_reply(tmp_path: Path, size: int) -> None:
    prefix = size.to_bytes(4, "big")
    with (
        scripted_daemon(tmp_path, sends(HEADER, prefix)) as data_dir,
        pytest.raises(ControlFailed, match="bad reply from the daemon"),
    ):
        download(data_dir)


def test_a_frame_announced_large_then_cut_costs_no_more_than_it_sent(tmp_path: Path) -> None:
    """A lying prefix (the cap, then a few bytes) ends in a clear error."""
    prefix = MAX_CONTROL_FRAME.to_bytes(4, "big")
    daemon = scripted_daemon(tmp_path, sends(prefix, b"\x92"))
    with daemon as data_dir, pytest.raises(ControlFailed, match="closed"):
        call(data_dir, Get(RECORD, None), GetHeader)


async def test_the_daemon_sends_a_data_chunk_as_encode_reply_does() -> None:
    """Split at its data (no copy of it), the frame's bytes are exactly the old ones."""
    ours, theirs = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = ControlStream(trio.SocketStream(ours))
    replies = [DataChunk(7, os.urandom(MIB)), DataChunk(8, b"small"), Done()]
    expected = b"".join(encode_reply(r) for r in replies)
    received = bytearray()

    async def read() -> None:
        while len(received) < len(expected):
            received.extend(await theirs.recv(1 << 20))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        for reply in replies:
            await stream.send(reply)
    assert bytes(received) == expected
    ours.close()
    theirs.close()
