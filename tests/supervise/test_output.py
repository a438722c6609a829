"""supervise.output: lines from a child's pipes, the rings, the log files, the followers."""

import asyncio
import logging
import os
import random
import stat
import tracemalloc

import pytest

from smanager.supervise.lines import LineSplitter
from smanager.supervise.output import RING_TEXT, Line, Output

TIMEOUT = 5


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def split(chunks, max_line=65536):
    splitter = LineSplitter(max_line)
    lines = []
    for chunk in chunks:
        lines += splitter.feed(chunk)
    return lines + splitter.flush()


def texts(lines):
    return [line.text for line in lines]


# -- splitting ---------------------------------------------------------------

def test_a_line_split_across_chunks_comes_out_whole():
    assert split([b"hel", b"lo\nwor", b"ld\n"]) == ["hello", "world"]


def test_crlf_loses_its_cr_and_a_cr_elsewhere_stays():
    assert split([b"a\r\nb\rc\nd\r\r\n"]) == ["a", "b\rc", "d\r"]


def test_a_cr_at_the_end_of_one_chunk_before_lf_in_the_next_is_dropped():
    assert split([b"one\r", b"\ntwo\r", b"\n"]) == ["one", "two"]


def test_empty_lines_are_lines():
    assert split([b"\n\na\n", b"\n"]) == ["", "", "a", ""]


def test_bytes_that_are_not_utf8_become_replacement_characters():
    assert split([b"caf\xe9\n\xff\xfe\n"]) == ["caf\ufffd", "\ufffd\ufffd"]


def test_a_character_split_between_chunks_decodes_whole():
    euro = "€".encode()
    assert split([b"x" + euro[:1], euro[1:] + b"\n"]) == ["x€"]


def test_flush_gives_the_unterminated_rest_once():
    splitter = LineSplitter()
    assert splitter.feed(b"done\nhalf") == ["done"]
    assert splitter.flush() == ["half"]
    assert splitter.flush() == []


def test_chunking_never_changes_the_lines():
    rng = random.Random(7)
    alphabet = [b"a", b"\xc3\xa9", b"\r", b"\n", b"\r\n", b"\xff"]
    for _ in range(200):
        data = b"".join(rng.choice(alphabet) * rng.randint(1, 30) for _ in range(40))
        cuts = sorted(rng.sample(range(len(data)), min(5, len(data))))
        chunks = [data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])]
        assert split(chunks, max_line=50) == split([data], max_line=50), data


def test_a_long_line_keeps_max_line_bytes_and_counts_the_rest():
    assert split([b"abcdefgh\nok\n"], max_line=5) == ["abcde [line cut: 3 more bytes]", "ok"]
    assert split([b"abc", b"defg", b"h\r\nok\n"], max_line=5) == [
        "abcde [line cut: 3 more bytes]", "ok"]


def test_a_long_line_cut_at_flush_says_how_much_was_cut():
    assert split([b"abcdefg"], max_line=4) == ["abcd [line cut: 3 more bytes]"]


def test_a_line_of_exactly_max_line_bytes_is_not_cut_even_with_crlf():
    assert split([b"abcd\r\n"], max_line=4) == ["abcd"]
    assert split([b"abcd", b"\r", b"\n"], max_line=4) == ["abcd"]
    assert split([b"abc\r\r\n"], max_line=4) == ["abc\r"]
    assert split([b"abc\r", b"\r\n"], max_line=4) == ["abc\r"]


def test_ten_megabytes_without_a_newline_take_no_more_than_max_line_memory():
    splitter = LineSplitter(max_line=65536)
    chunk = b"y" * 65536
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(160):
            assert splitter.feed(chunk) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 4 * 65536
    [line] = splitter.flush()
    assert line == "y" * 65536 + f" [line cut: {160 * 65536 - 65536} more bytes]"


# -- rings -------------------------------------------------------------------

def test_the_ring_keeps_the_last_lines_of_a_stream():
    output = Output("p", None, lines=3)
    output.feed("out", b"1\n2\n3\n")
    output.feed("out", b"4\n5\n")
    assert texts(output.last(10, "out")) == ["3", "4", "5"]
    output.feed("out", b"".join(b"%d\n" % i for i in range(100)))
    assert texts(output.last(10, "out")) == ["97", "98", "99"]


def test_the_ring_drops_the_oldest_lines_when_its_text_passes_one_mib():
    output = Output("p", None, lines=1000)
    line = b"z" * 60_000 + b"\n"
    for _ in range(30):
        output.feed("out", line)
    kept = output.last(100, "out")
    assert len(kept) == RING_TEXT // 60_000
    assert sum(len(line.text) for line in kept) <= RING_TEXT


def test_last_filters_by_stream_and_both_adds_notes_in_order():
    clock = Clock()
    output = Output("p", None, clock=clock)
    output.feed("out", b"o1\n")
    clock.now += 1
    output.feed("err", b"e1\n")
    output.note("exited with status 1")
    output.feed("out", b"o2\n")
    assert texts(output.last(stream="out")) == ["o1", "o2"]
    assert texts(output.last(stream="err")) == ["e1"]
    assert output.last() == [Line(1000.0, "out", "o1"), Line(1001.0, "err", "e1"),
                             Line(1001.0, "sys", "exited with status 1"),
                             Line(1001.0, "out", "o2")]
    assert texts(output.last(2)) == ["exited with status 1", "o2"]
    with pytest.raises(ValueError):
        output.last(stream="sys")


def test_stderr_lines_outlive_a_flood_of_stdout():
    output = Output("p", None, lines=10)
    output.feed("err", b"fatal: no config\n")
    output.feed("out", b"noise\n" * 1000)
    assert output.last_text("err") == "fatal: no config"


def test_last_text_is_the_latest_line_or_none():
    output = Output("p", None)
    assert output.last_text() is None
    output.feed("err", b"first\nsecond\npartial")
    assert output.last_text("err") == "second"
    output.end("err")
    assert output.last_text("err") == "partial"
    assert output.last_text("out") is None


# -- log files ---------------------------------------------------------------

def test_raw_bytes_reach_the_stream_files_unchanged(tmp_path):
    output = Output("web", str(tmp_path))
    output.feed("out", b"caf\xe9\r\n")
    output.feed("err", b"no newline")
    output.close()
    assert output.paths == {"out": str(tmp_path / "web.out.log"),
                            "err": str(tmp_path / "web.err.log")}
    assert (tmp_path / "web.out.log").read_bytes() == b"caf\xe9\r\n"
    assert (tmp_path / "web.err.log").read_bytes() == b"no newline"


def test_without_a_log_dir_there_are_no_paths():
    assert Output("p", None).paths == {}


def test_a_new_output_for_the_same_name_appends(tmp_path):
    Output("p", str(tmp_path)).feed("out", b"one\n")
    second = Output("p", str(tmp_path))
    second.feed("out", b"two\n")
    second.close()
    assert (tmp_path / "p.out.log").read_bytes() == b"one\ntwo\n"


def test_the_log_dir_is_created_with_mode_750(tmp_path):
    old = os.umask(0o022)
    try:
        Output("p", str(tmp_path / "logs")).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o750


def test_rotation_shifts_numbered_backups_and_keeps_only_backups(tmp_path):
    output = Output("p", str(tmp_path), max_bytes=100, backups=2)
    for letter in b"abcd":
        output.feed("out", bytes([letter]) * 59 + b"\n")
    output.close()
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["p.err.log", "p.out.log", "p.out.log.1", "p.out.log.2"]
    assert (tmp_path / "p.out.log").read_bytes() == b"d" * 59 + b"\n"
    assert (tmp_path / "p.out.log.1").read_bytes() == b"c" * 59 + b"\n"
    assert (tmp_path / "p.out.log.2").read_bytes() == b"b" * 59 + b"\n"


def test_a_file_fills_up_to_max_bytes_before_it_rotates(tmp_path):
    output = Output("p", str(tmp_path), max_bytes=100, backups=1)
    for _ in range(3):
        output.feed("out", b"x" * 49 + b"\n")
    output.close()
    assert (tmp_path / "p.out.log.1").stat().st_size == 100
    assert (tmp_path / "p.out.log").stat().st_size == 50


def test_zero_backups_starts_a_new_file_and_keeps_no_old_one(tmp_path):
    output = Output("p", str(tmp_path), max_bytes=10, backups=0)
    output.feed("out", b"old-old\n")
    output.feed("out", b"new-new\n")
    output.close()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p.err.log", "p.out.log"]
    assert (tmp_path / "p.out.log").read_bytes() == b"new-new\n"


def test_a_note_goes_to_memory_and_the_err_file_on_its_own_line(tmp_path):
    output = Output("p", str(tmp_path))
    output.feed("err", b"half a line")
    output.note("exited with status 1")
    output.close()
    assert (tmp_path / "p.err.log").read_bytes() == (
        b"half a line\n[smanager] exited with status 1\n")
    assert (tmp_path / "p.out.log").read_bytes() == b""
    assert texts(output.last(stream="both")) == ["exited with status 1"]


def test_reopen_after_an_external_rotation_writes_a_new_file(tmp_path):
    output = Output("p", str(tmp_path))
    output.feed("out", b"before\n")
    os.rename(tmp_path / "p.out.log", tmp_path / "rotated")
    output.reopen()
    output.feed("out", b"after\n")
    output.close()
    assert (tmp_path / "rotated").read_bytes() == b"before\n"
    assert (tmp_path / "p.out.log").read_bytes() == b"after\n"


def test_output_after_close_stays_in_memory_only(tmp_path):
    output = Output("p", str(tmp_path))
    output.close()
    output.feed("out", b"late\n")
    assert (tmp_path / "p.out.log").read_bytes() == b""
    assert output.last_text("out") == "late"


def test_an_unusable_log_dir_is_logged_once_and_lines_still_reach_memory(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="smanager.proc")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    output = Output("p", str(not_a_dir), max_bytes=1000)
    for _ in range(500):    # 5.5 kB: five retries, at each would-be rotation
        output.feed("out", b"still here\n")
    output.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"proc p: cannot write {not_a_dir}/p.out.log (Not a directory);"
        " keeping its output in memory only",
        f"proc p: cannot write {not_a_dir}/p.err.log (Not a directory);"
        " keeping its output in memory only"]
    assert len(output.last(1000, "out")) == 500


def test_a_failing_file_is_tried_again_at_the_next_rotation(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="smanager.proc")
    os.symlink("/dev/full", tmp_path / "p.out.log")     # every write: ENOSPC
    output = Output("p", str(tmp_path), max_bytes=1000, backups=1)
    for number in range(4):
        output.feed("out", b"%d" % number * 299 + b"\n")
    output.close()
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "No space left on device" in caplog.records[0].getMessage()
    assert (tmp_path / "p.out.log.1").is_symlink()
    assert (tmp_path / "p.out.log").read_bytes() == b"3" * 299 + b"\n"
    assert texts(output.last(stream="out")) == [str(n) * 299 for n in range(4)]


# -- followers ---------------------------------------------------------------

async def collect(follower, count):
    lines = []
    async with asyncio.timeout(TIMEOUT):
        async for line in follower:
            lines.append(line)
            if len(lines) == count:
                break
    return lines


async def test_a_follower_gets_new_lines_of_all_streams_in_order():
    output = Output("p", None)
    output.feed("out", b"before\n")
    follower = output.follow()
    output.feed("out", b"o1\n")
    output.feed("err", b"e1\n")
    output.note("started")
    assert [(line.stream, line.text) for line in await collect(follower, 3)] == [
        ("out", "o1"), ("err", "e1"), ("sys", "started")]


async def test_a_waiting_follower_wakes_when_a_line_arrives():
    output = Output("p", None)
    follower = output.follow()
    waiting = asyncio.create_task(collect(follower, 1))
    await asyncio.sleep(0)      # one turn of the loop: the task reaches its wait
    assert not waiting.done()
    output.feed("out", b"hello\n")
    assert texts(await waiting) == ["hello"]


async def test_a_slow_follower_gets_a_drop_marker_before_the_next_kept_line():
    output = Output("p", None)
    follower = output.follow(queue_size=3)
    output.feed("out", b"1\n2\n3\n4\n5\n")
    assert texts(await collect(follower, 3)) == ["1", "2", "3"]
    output.feed("out", b"6\n")
    assert [(line.stream, line.text) for line in await collect(follower, 2)] == [
        ("sys", "[2 lines dropped]"), ("out", "6")]


async def test_the_drop_marker_takes_a_place_in_the_queue():
    output = Output("p", None)
    follower = output.follow(queue_size=3)
    output.feed("out", b"1\n2\n3\n4\n")
    assert texts(await collect(follower, 1)) == ["1"]
    output.feed("out", b"5\n")      # two queued and the marker to come: no room
    assert texts(await collect(follower, 2)) == ["2", "3"]
    output.feed("out", b"6\n")
    assert texts(await collect(follower, 2)) == ["[2 lines dropped]", "6"]


async def test_a_follower_ends_after_close_with_what_it_had_and_the_drop_count():
    output = Output("p", None)
    follower = output.follow(queue_size=2)
    output.feed("out", b"a\nb\nc\n")
    output.close()
    assert texts(await collect(follower, 10)) == ["a", "b", "[1 lines dropped]"]
    assert texts(await collect(output.follow(), 10)) == []


async def test_closing_a_follower_ends_it_and_unsubscribes_it():
    output = Output("p", None)
    follower, other = output.follow(), output.follow()
    output.feed("out", b"unread\n")
    waiting = asyncio.create_task(collect(other, 10))
    follower.close()
    follower.close()
    output.feed("out", b"after\n")
    assert texts(await collect(follower, 10)) == []
    output.close()
    assert texts(await waiting) == ["unread", "after"]
