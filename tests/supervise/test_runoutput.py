"""supervise.runoutput: one script run's output, Pyjojo's result shape, the cap, followers."""

import asyncio
import tracemalloc

from smanager.supervise.runoutput import RunLine, RunOutput

TIMEOUT = 5

# Pyjojo's README example (echo.sh run with text="hello world!"), as the script writes it.
README_ECHO_OUTPUT = (b"echo'd text: hello world!\n"
                      b"jojo_return_value name=bob\n"
                      b"jojo_return_value age=99\n")


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def pairs(lines):
    return [(line.stream, line.text) for line in lines]


async def collect(follower, count=10_000):
    lines = []
    async with asyncio.timeout(TIMEOUT):
        async for line in follower:
            lines.append(line)
            if len(lines) == count:
                break
    return lines


# -- Pyjojo's result shape ---------------------------------------------------

def test_pyjojos_readme_example_gives_pyjojos_readme_result():
    output = RunOutput()
    output.feed("out", README_ECHO_OUTPUT)
    output.end("out")
    output.end("err")
    assert output.result(0) == {"retcode": 0, "stdout": ["echo'd text: hello world!"],
                                "stderr": [], "return_values": {"name": "bob", "age": "99"}}


def test_split_output_keeps_stdout_and_stderr_apart():
    output = RunOutput()
    output.feed("out", b"one\n")
    output.feed("err", b"warning: two\n")
    output.feed("out", b"three\n")
    assert output.result(1) == {"retcode": 1, "stdout": ["one", "three"],
                                "stderr": ["warning: two"], "return_values": {}}


def test_combined_output_has_both_streams_in_stdout_in_arrival_order_and_no_stderr_key():
    output = RunOutput(combined=True)
    output.feed("out", b"first line\n")
    output.feed("err", b"an error with  spaces\n")
    output.feed("out", b"last line\n")
    assert output.result(2) == {"retcode": 2, "return_values": {}, "stdout": [
        "first line", "an error with  spaces", "last line"]}
    assert output.stderr == []


def test_combined_output_joins_each_streams_partial_lines_separately():
    output = RunOutput(combined=True)
    output.feed("out", b"hal")
    output.feed("err", b"err line\n")
    output.feed("out", b"f a line\n")
    assert output.stdout == ["err line", "half a line"]


def test_a_return_value_on_stderr_counts_in_combined_mode_as_it_did_in_pyjojo():
    output = RunOutput(combined=True)
    output.feed("err", b"jojo_return_value k=v\n")
    assert output.return_values == {"k": "v"}
    assert output.stdout == []


def test_a_return_value_on_stderr_is_output_in_split_mode():
    output = RunOutput()
    output.feed("err", b"jojo_return_value k=v\n")
    assert output.return_values == {}
    assert output.stderr == ["jojo_return_value k=v"]


def test_a_return_value_splits_at_the_first_equals_sign_and_strips_both_sides():
    output = RunOutput()
    output.feed("out", b"jojo_return_value  url = http://h/?a=b&c=d  \n")
    assert output.return_values == {"url": "http://h/?a=b&c=d"}


def test_a_later_return_value_replaces_an_earlier_one():
    output = RunOutput()
    output.feed("out", b"jojo_return_value n=1\njojo_return_value n=2\n")
    assert output.return_values == {"n": "2"}


def test_a_return_value_line_without_equals_or_key_stays_in_stdout():
    output = RunOutput()
    output.feed("out", b"jojo_return_value oops\njojo_return_value =5\n")
    assert output.stdout == ["jojo_return_value oops", "jojo_return_value =5"]
    assert output.return_values == {}


def test_bytes_that_are_not_utf8_are_replaced_not_fatal():
    output = RunOutput()
    output.feed("out", b"caf\xe9\n")
    output.feed("err", b"\xff\xfe\n")
    assert output.stdout == ["caf\ufffd"]
    assert output.stderr == ["\ufffd\ufffd"]


def test_crlf_line_ends_lose_their_cr():
    output = RunOutput()
    output.feed("out", b"dos\r\njojo_return_value k=v\r\n")
    assert output.stdout == ["dos"]
    assert output.return_values == {"k": "v"}


def test_end_makes_the_unterminated_rest_a_line():
    output = RunOutput()
    output.feed("out", b"no newline")
    assert output.stdout == []
    output.end("out")
    assert output.stdout == ["no newline"]


def test_a_note_is_kept_apart_from_the_scripts_output():
    output = RunOutput()
    output.note("timed out after 300 s;\nstopped it")
    assert output.notes == ["timed out after 300 s; stopped it"]
    assert output.result(-15) == {"retcode": -15, "stdout": [], "stderr": [],
                                  "return_values": {}}


# -- the cap -----------------------------------------------------------------

def test_output_past_the_cap_is_not_kept_and_marked_truncated_once():
    output = RunOutput(cap=10)     # each line counts its bytes and its newline
    output.feed("out", b"abcd\n")
    output.feed("err", b"efg\n")
    output.feed("out", b"h\nij\n")
    output.feed("err", b"k\n")
    output.feed("out", b"x\n")
    assert (output.stdout, output.stderr) == (["abcd"], ["efg"])
    assert output.notes == ["[output truncated at 10 bytes]"]
    assert output.result(0)["truncated"] is True


def test_output_of_exactly_the_cap_is_kept_whole():
    output = RunOutput(cap=9)
    output.feed("out", b"abcd\nefg\n")
    assert output.stdout == ["abcd", "efg"]
    assert not output.truncated
    assert "truncated" not in output.result(0)


def test_multibyte_characters_count_their_utf8_bytes_against_the_cap():
    output = RunOutput(cap=8)
    output.feed("out", "€€\n".encode())      # 7 bytes
    output.feed("out", b"a\n")
    assert output.stdout == ["€€"]
    assert output.truncated


def test_the_default_cap_is_one_megabyte_and_says_so():
    output = RunOutput()
    line = b"z" * 99 + b"\n"
    output.feed("out", line * 10_000)
    assert not output.truncated
    output.feed("out", line)
    assert len(output.stdout) == 10_000
    assert output.notes == ["[output truncated at 1 MB]"]


def test_return_values_after_a_flood_of_output_are_still_kept():
    output = RunOutput(cap=10)
    output.feed("out", b"x" * 100 + b"\njojo_return_value status=ok\n")
    assert output.return_values == {"status": "ok"}


def test_return_values_past_their_own_budget_are_dropped_and_marked_truncated():
    output = RunOutput(cap=10)
    output.feed("out", b"jojo_return_value a=1234\njojo_return_value b=12345\n")
    assert output.return_values == {"a": "1234"}
    assert output.truncated
    assert output.stdout == []


def test_ten_megabytes_without_a_newline_stay_bounded_and_become_one_cut_line():
    output = RunOutput()
    chunk = b"y" * 65536
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(160):
            output.feed("out", chunk)
        output.end("out")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 5 * 65536
    assert output.stdout == ["y" * 65536 + f" [line cut: {159 * 65536} more bytes]"]


def test_ten_megabytes_of_lines_keep_about_the_cap_in_memory():
    output = RunOutput()
    chunk = (b"w" * 99 + b"\n") * 655
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(160):
            output.feed("out", chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert output.truncated and len(output.stdout) == 10_000
    assert peak - before < 4_000_000


# -- followers ---------------------------------------------------------------

async def test_a_follower_replays_what_was_kept_then_gets_live_lines():
    clock = Clock()
    output = RunOutput(clock=clock)
    output.feed("out", b"old out\n")
    clock.now = 1001.0
    output.feed("err", b"old err\n")
    output.note("a note")
    follower = output.follow()
    output.feed("out", b"new\n")
    output.close()
    lines = await collect(follower)
    assert lines[:2] == [RunLine(1000.0, "out", "old out"), RunLine(1001.0, "err", "old err")]
    assert pairs(lines[2:]) == [("sys", "a note"), ("out", "new")]


async def test_a_follower_without_replay_gets_only_new_lines():
    output = RunOutput()
    output.feed("out", b"old\n")
    follower = output.follow(replay=False)
    output.feed("out", b"new\n")
    output.close()
    assert pairs(await collect(follower)) == [("out", "new")]


async def test_a_waiting_follower_wakes_when_a_line_arrives():
    output = RunOutput()
    follower = output.follow()
    waiting = asyncio.create_task(collect(follower, 1))
    await asyncio.sleep(0)
    assert not waiting.done()
    output.feed("err", b"hello\n")
    assert pairs(await waiting) == [("err", "hello")]


async def test_followers_do_not_see_return_values():
    output = RunOutput()
    follower = output.follow()
    output.feed("out", README_ECHO_OUTPUT)
    output.close()
    assert pairs(await collect(follower)) == [("out", "echo'd text: hello world!")]


async def test_followers_get_the_lines_past_the_cap_after_the_marker():
    output = RunOutput(cap=4)
    follower = output.follow()
    output.feed("out", b"ab\ncd\nef\n")
    output.close()
    assert pairs(await collect(follower)) == [
        ("out", "ab"), ("sys", "[output truncated at 4 bytes]"), ("out", "cd"), ("out", "ef")]
    assert pairs(await collect(output.follow())) == [
        ("out", "ab"), ("sys", "[output truncated at 4 bytes]")]


async def test_combined_lines_reach_followers_as_stdout():
    output = RunOutput(combined=True)
    follower = output.follow()
    output.feed("err", b"oops\n")
    output.close()
    assert pairs(await collect(follower)) == [("out", "oops")]


async def test_a_slow_follower_gets_a_drop_marker_and_feed_never_waits():
    output = RunOutput()
    follower = output.follow(queue_size=3)
    output.feed("out", b"1\n2\n3\n4\n5\n")
    assert [line.text for line in follower.ready_now()] == ["1", "2", "3"]
    output.feed("out", b"6\n")
    output.close()
    assert pairs(await collect(follower)) == [("sys", "[2 lines dropped]"), ("out", "6")]


async def test_replay_is_not_limited_by_the_queue_but_comes_in_bounded_batches():
    output = RunOutput()
    output.feed("out", b"".join(b"%d\n" % i for i in range(25)))
    follower = output.follow(queue_size=10)
    output.feed("err", b"live\n")
    batches = [follower.ready_now() for _ in range(4)]
    assert [len(batch) for batch in batches] == [10, 10, 5, 1]
    assert [line.text for line in batches[2] + batches[3]] == [
        "20", "21", "22", "23", "24", "live"]
    assert follower.ready_now() == []


async def test_followers_end_on_close_and_a_late_follower_replays_and_ends():
    output = RunOutput()
    output.feed("out", b"done\n")
    first = output.follow(replay=False)
    waiting = asyncio.create_task(collect(first))
    await asyncio.sleep(0)
    output.close()
    assert await waiting == []
    assert pairs(await collect(output.follow())) == [("out", "done")]


async def test_closing_a_follower_ends_it_even_mid_replay():
    output = RunOutput()
    output.feed("out", b"a\nb\n")
    follower = output.follow(queue_size=1)
    assert pairs(follower.ready_now()) == [("out", "a")]
    follower.close()
    output.feed("out", b"c\n")
    assert await collect(follower) == []
    assert not output._followers
