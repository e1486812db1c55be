"""The utterance cutter and the Opus "Plan A" framing (docs/protocol.md, audio_chunk): pure, no I/O."""

from __future__ import annotations

import pytest

from dispatch.cutter import MAX_UTTERANCE_BYTES, PACKET_MS, CutReason, Cutter, opus_packet_count
from tests.clients import AUDIO, split_packets

PACKETS = split_packets(AUDIO)


def packets(start: int, stop: int) -> bytes:
    return b"".join(PACKETS[start:stop])


def packet(payload_len: int) -> bytes:
    return payload_len.to_bytes(2, "little") + b"\x55" * payload_len


# --- framing ------------------------------------------------------------------------------


def test_fixture_audio_is_50_packets_of_20_ms():
    assert opus_packet_count(AUDIO) == 50
    assert len(PACKETS) == 50 and b"".join(PACKETS) == AUDIO
    assert PACKET_MS == 20


def test_packet_count_of_concatenated_and_empty_buffers():
    assert opus_packet_count(b"") == 0
    assert opus_packet_count(AUDIO + AUDIO) == 100
    assert opus_packet_count(packets(0, 7)) == 7
    assert opus_packet_count(packet(1)) == 1
    assert opus_packet_count(packet(65535)) == 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x05", "cut short"),  # one byte of a length
        (AUDIO + b"\x05", "cut short"),  # a truncated length after whole packets
        (b"\x05\x00abc", "past the end"),  # a packet of 5 announced, 3 present
        (AUDIO[:-1], "past the end"),  # the last packet loses a byte
        (b"\x00\x00", "length 0"),
        (packets(0, 3) + b"\x00\x00" + packets(3, 5), "length 0"),
        (b"hello world", "past the end"),  # text is not the framing
    ],
)
def test_malformed_framing_is_refused(data, why):
    with pytest.raises(ValueError, match=why):
        opus_packet_count(data)


# --- cuts ---------------------------------------------------------------------------------


def test_final_chunk_is_a_manual_cut_with_its_payload_appended_first():
    cutter = Cutter(max_ms=10_000)
    assert cutter.add(packets(0, 10), final=False) is None
    assert cutter.pending
    cut = cutter.add(packets(10, 20), final=True)
    assert cut is not None
    assert cut.reason is CutReason.MANUAL
    assert cut.audio == packets(0, 20)
    assert not cutter.pending


def test_final_with_empty_payload_cuts_what_is_buffered():
    cutter = Cutter(max_ms=10_000)
    cutter.add(AUDIO, final=False)
    cut = cutter.add(b"", final=True)
    assert cut is not None and cut.reason is CutReason.MANUAL and cut.audio == AUDIO


def test_final_that_also_reaches_the_limit_is_a_manual_cut():
    cutter = Cutter(max_ms=1000)
    cut = cutter.add(AUDIO, final=True)  # exactly 1000 ms
    assert cut is not None and cut.reason is CutReason.MANUAL and cut.audio == AUDIO


def test_length_cut_at_the_limit_counted_from_packets():
    cutter = Cutter(max_ms=10_000)  # the default limit: 500 packets
    for _ in range(9):
        assert cutter.add(AUDIO, final=False) is None  # 9 × 50 packets = 9000 ms
    cut = cutter.add(AUDIO, final=False)  # 10 000 ms: reached
    assert cut is not None
    assert cut.reason is CutReason.MAX_DURATION
    assert cut.audio == AUDIO * 10
    assert not cutter.pending


def test_length_cut_boundary_is_exact():
    cutter = Cutter(max_ms=1000)
    assert cutter.add(packets(0, 49), final=False) is None  # 980 ms
    cut = cutter.add(packets(49, 50), final=False)  # 1000 ms
    assert cut is not None and cut.reason is CutReason.MAX_DURATION and cut.audio == AUDIO


def test_length_cut_takes_whole_chunks_never_splits_one():
    cutter = Cutter(max_ms=1000)
    assert cutter.add(packets(0, 30), final=False) is None  # 600 ms
    cut = cutter.add(packets(20, 50), final=False)  # 1200 ms: the whole chunk goes in
    assert cut is not None and cut.reason is CutReason.MAX_DURATION
    assert cut.audio == packets(0, 30) + packets(20, 50)
    assert opus_packet_count(cut.audio) == 60
    assert not cutter.pending  # nothing carried over into the next utterance


def test_length_is_not_bytes():
    """Many small packets: the duration counts packets, whatever their size."""
    cutter = Cutter(max_ms=1000)
    assert cutter.add(packet(1) * 49, final=False) is None
    cut = cutter.add(packet(1), final=False)
    assert cut is not None and cut.reason is CutReason.MAX_DURATION and len(cut.audio) == 150


def test_size_cut_at_500000_bytes():
    assert MAX_UTTERANCE_BYTES == 500_000
    cutter = Cutter(max_ms=10**9)  # only the size counts here
    assert cutter.max_bytes == 500_000  # the default
    chunk = packet(998) * 100  # 100 000 bytes
    for _ in range(4):
        assert cutter.add(chunk, final=False) is None
    cut = cutter.add(chunk, final=False)  # 500 000 bytes: reached
    assert cut is not None and cut.reason is CutReason.MAX_DURATION
    assert len(cut.audio) == 500_000


def test_size_cut_boundary_is_exact_and_takes_whole_chunks():
    cutter = Cutter(max_ms=10**9)
    for _ in range(4):
        cutter.add(packet(998) * 100, final=False)
    assert cutter.add(packet(998) * 99 + packet(997), final=False) is None  # 499 999 bytes
    cut = cutter.add(packet(1), final=False)  # 500 002 bytes
    assert cut is not None and cut.reason is CutReason.MAX_DURATION and len(cut.audio) == 500_002


def test_pause_cut():
    cutter = Cutter(max_ms=10_000)
    cutter.add(packets(0, 30), final=False)
    cut = cutter.cut(CutReason.PAUSE)
    assert cut is not None and cut.reason is CutReason.PAUSE and cut.audio == packets(0, 30)
    assert not cutter.pending


@pytest.mark.parametrize("reason", list(CutReason))
def test_empty_cut_returns_none(reason):
    assert Cutter(max_ms=10_000).cut(reason) is None


def test_empty_final_and_empty_chunks_make_no_cut():
    cutter = Cutter(max_ms=10_000)
    assert cutter.add(b"", final=False) is None
    assert cutter.add(b"", final=True) is None
    assert not cutter.pending
    cutter.add(AUDIO, final=True)
    assert cutter.add(b"", final=True) is None  # a second final right after a cut


def test_chunks_after_a_cut_start_the_next_utterance():
    cutter = Cutter(max_ms=10_000)
    first = cutter.add(AUDIO, final=True)
    second = cutter.add(packets(0, 5), final=True)
    assert first is not None and second is not None
    assert second.audio == packets(0, 5)


def test_a_bad_chunk_is_dropped_and_leaves_the_buffer_as_it_was():
    cutter = Cutter(max_ms=10_000)
    cutter.add(packets(0, 10), final=False)
    with pytest.raises(ValueError):
        cutter.add(b"\x05\x00ab", final=True)
    cut = cutter.add(b"", final=True)
    assert cut is not None and cut.audio == packets(0, 10)


# --- turns --------------------------------------------------------------------------------


def test_length_cuts_of_one_turn_share_its_turn_id_and_a_final_ends_it():
    cutter = Cutter(max_ms=1000)
    pieces = [cutter.add(AUDIO, final=False) for _ in range(3)]
    last = cutter.add(packets(0, 10), final=True)
    assert all(piece is not None and piece.reason is CutReason.MAX_DURATION for piece in pieces)
    assert last is not None and last.reason is CutReason.MANUAL
    turn = {piece.turn_id for piece in pieces} | {last.turn_id}
    assert len(turn) == 1 and turn.pop()
    following = cutter.add(AUDIO, final=True)
    assert following is not None and following.turn_id != last.turn_id


def test_a_pause_ends_the_turn():
    cutter = Cutter(max_ms=1000)
    piece = cutter.add(AUDIO, final=False)
    cutter.add(packets(0, 10), final=False)
    paused = cutter.cut(CutReason.PAUSE)
    assert piece is not None and paused is not None
    assert paused.reason is CutReason.PAUSE and paused.turn_id == piece.turn_id
    following = cutter.add(packets(0, 10), final=True)
    assert following is not None and following.turn_id != paused.turn_id


def test_an_empty_final_or_pause_after_a_length_cut_still_ends_the_turn():
    for end in (lambda c: c.add(b"", final=True), lambda c: c.cut(CutReason.PAUSE)):
        cutter = Cutter(max_ms=1000)
        piece = cutter.add(AUDIO, final=False)
        assert piece is not None and end(cutter) is None
        following = cutter.add(AUDIO, final=False)
        assert following is not None and following.turn_id != piece.turn_id


def test_turn_ids_are_new_for_each_turn():
    cutter = Cutter(max_ms=10_000)
    turns = [cutter.add(packets(0, 5), final=True) for _ in range(20)]
    assert len({cut.turn_id for cut in turns if cut is not None}) == 20
