"""The three text formats: read what exec collectors print, write what export sends."""

import math
import shutil
import subprocess

from helpers import need

from smanager.metrics.formats import (
    Sample,
    field_named_value,
    graphite_lines,
    influx_lines,
    labelled,
    prometheus_name,
    prometheus_text,
    read_influx,
    read_plain,
    read_prometheus,
    split_name,
)


def same(samples, expected):
    """Samples compared with NaN equal to NaN."""
    assert len(samples) == len(expected), samples
    for got, want in zip(samples, expected):
        assert got.name == want.name and got.ts == want.ts, (got, want)
        assert got.value == want.value or (math.isnan(got.value) and math.isnan(want.value))


# -- names ------------------------------------------------------------------------------------

def test_a_labelled_name_sorts_its_keys_and_splits_back_with_escapes():
    name = labelled("cpu.usage", {"path": 'a "b"\\c\nd', "host": "x"})
    assert name == 'cpu.usage{host="x",path="a \\"b\\"\\\\c\\nd"}'
    assert split_name(name) == ("cpu.usage", {"host": "x", "path": 'a "b"\\c\nd'})
    assert split_name("load.load1") == ("load.load1", {})


# -- plain --------------------------------------------------------------------------------------

def test_plain_lines_give_samples_with_and_without_timestamps():
    text = "# a comment\n\nload.load1 0.5\r\nbackup.age 3600 1700000000\nweird NaN\nup -Inf 1.5\n"
    samples, problems = read_plain(text)
    assert problems == []
    same(samples, [Sample("load.load1", 0.5, None), Sample("backup.age", 3600.0, 1700000000.0),
                   Sample("weird", math.nan, None), Sample("up", -math.inf, 1.5)])


def test_a_bad_plain_line_is_reported_by_number_and_the_others_are_read():
    text = "a 1\nb two\nc 3 4 5\nd/e 1\nf 1_000\ng 0x10\nh 1 nan\ni 9\n"
    samples, problems = read_plain(text)
    assert [s.name for s in samples] == ["a", "i"]
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(2, 8)]
    assert problems[0] == "line 2: 'two' is not a number"
    assert problems[2] == "line 4: 'd/e' is not a name of [A-Za-z0-9_.:-]"
    assert all("\n" not in p for p in problems)


def test_graphite_lines_are_read_back_by_the_plain_reader():
    samples = [Sample("load.load1", 0.25, 1700000000.0),
               Sample("net.eth0.rx_bytes", 1e20, 1700000010.0),
               Sample("disk.used", -3.0, 1.0)]
    assert graphite_lines(samples) == ("load.load1 0.25 1700000000\n"
                                       "net.eth0.rx_bytes 1e+20 1700000010\n" "disk.used -3.0 1\n")
    assert read_plain(graphite_lines(samples)) == (samples, [])


def test_graphite_sanitises_paths_folds_labels_in_and_leaves_out_nan():
    samples = [Sample('disk free:%{mount="/var/lib",dev="sda 1"}', 5, 1700000000.9),
               Sample("x", math.nan, 1.0), Sample("y", math.inf, 1.0), Sample("now", 1, None)]
    assert graphite_lines(samples, now=42.7) == (
        "disk_free__.sda_1._var_lib 5.0 1700000000\nnow 1.0 42\n")


# -- influx ------------------------------------------------------------------------------------

def test_influx_fields_become_measurement_dot_field_with_tags_as_labels():
    text = ('cpu,host=a,region=eu usage_idle=97.5,usage_user=2i,ok=true,bad=F,note="x y, z=1" '
            '1700000000123456000\n'
            'mem free=5u\n')
    samples, problems = read_influx(text)
    assert problems == []
    ts = 1700000000.123456
    assert samples == [Sample('cpu.usage_idle{host="a",region="eu"}', 97.5, ts),
                       Sample('cpu.usage_user{host="a",region="eu"}', 2.0, ts),
                       Sample('cpu.ok{host="a",region="eu"}', 1.0, ts),
                       Sample('cpu.bad{host="a",region="eu"}', 0.0, ts),
                       Sample("mem.free", 5.0, None)]


def test_influx_escapes_in_tags_and_quoted_strings_with_spaces_and_commas():
    text = ('disk,path=/my\\ data\\,x,k=v\\=w\\\\x used=1.5e3,label="a \\"q\\" b, c=d" 10\n'
            'disk,k\\ ey=v used=1\n')
    samples, problems = read_influx(text)
    labels = {"path": "/my data,x", "k": "v=w\\x"}
    assert samples == [Sample(labelled("disk.used", labels), 1500.0, 1e-8)]
    assert problems == ["line 2: 'k ey' is not a tag key of [A-Za-z0-9_.:-]"]


def test_a_bad_influx_line_is_reported_by_number_and_the_others_are_read():
    text = ("ok value=1\n"
            "nofields\n"
            "m value=abc\n"
            "m value=1 12.5\n"
            'm s="open\n'
            "m,tag value=1\n"
            "m value=3x\n"
            ",t=1 v=1\n"
            "m =1\n"
            "fine value=2 5000000000\n")
    samples, problems = read_influx(text)
    assert samples == [Sample("ok.value", 1.0, None), Sample("fine.value", 2.0, 5.0)]
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(2, 10)]
    assert problems[3] == "line 5: a string field is not closed"


def test_influx_lines_are_read_back_the_same():
    samples = [Sample("load.load1", 0.5, 1700000000.123456),
               Sample(labelled("disk.used", {"path": "/my data,x=1", "dev": "sda"}), 12.0, None),
               Sample("uptime", 3.0, 2.0)]
    text = influx_lines(samples)
    assert text.splitlines() == ["load load1=0.5 1700000000123456000",
                                 "disk,dev=sda,path=/my\\ data\\,x\\=1 used=12.0",
                                 "uptime value=3.0 2000000000"]
    assert read_influx(text) == ([samples[0], samples[1], Sample("uptime.value", 3.0, 2.0)], [])


def test_a_line_break_in_a_label_becomes_a_space_so_one_sample_is_one_line():
    text = influx_lines([Sample(labelled("job.up", {"note": "two\nlines\r\nhere"}), 1, None)])
    assert text == "job,note=two\\ lines\\ here up=1.0\n"


def test_influx_lines_can_use_the_whole_name_and_leave_out_nan_and_empty_tags():
    samples = [Sample(labelled("load.load1", {"empty": ""}), 1, None), Sample("x", math.nan, None)]
    assert influx_lines(samples, measurement_of=field_named_value) == "load.load1 value=1.0\n"


# -- prometheus --------------------------------------------------------------------------------

NODE_EXPORTER_SAMPLE = """\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5",} 4773
node_nan NaN
"""


def test_the_prometheus_documentation_example_is_read_whole():
    samples, counters, problems = read_prometheus(NODE_EXPORTER_SAMPLE)
    assert problems == [] and counters == {"http_requests_total"}
    same(samples, [
        Sample('http_requests_total{code="200",method="post"}', 1027.0, 1395066363.0),
        Sample('http_requests_total{code="400",method="post"}', 3.0, 1395066363.0),
        Sample(labelled("msdos_file_access_time_seconds",
                        {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}),
               1.458255915e9, None),
        Sample("metric_without_timestamp_and_labels", 12.47, None),
        Sample('something_weird{problem="division by zero"}', math.inf, -3982.045),
        Sample('http_request_duration_seconds_bucket{le="0.05"}', 24054.0, None),
        Sample('http_request_duration_seconds_bucket{le="+Inf"}', 144320.0, None),
        Sample("http_request_duration_seconds_sum", 53423.0, None),
        Sample("http_request_duration_seconds_count", 144320.0, None),
        Sample('rpc_duration_seconds{quantile="0.5"}', 4773.0, None),
        Sample("node_nan", math.nan, None)])


def test_a_bad_prometheus_line_is_reported_by_number_and_the_others_are_read():
    text = ('a 1\n'
            '9bad 1\n'
            'b{x="1" 2\n'
            'c{x=1} 3\n'
            'd one\n'
            'e 1 2.5\n'
            '# TYPE f countr\n'
            'g{x="1"}4\n'
            'h 5 6 7\n'
            'i 8\n')
    samples, counters, problems = read_prometheus(text)
    assert [s.name for s in samples] == ["a", "i"] and counters == frozenset()
    assert [p.split(":")[0] for p in problems] == [f"line {n}" for n in range(2, 10)]


def test_prometheus_text_names_families_types_and_special_values():
    samples = [Sample("load.load1", 0.5, 1.0), Sample("net-eth0:rx", 10, None),
               Sample(labelled("disk.used", {"mount.point": "/", "dev": 'a"b'}), 1e20, None),
               Sample(labelled("disk.used", {"mount.point": "/var", "dev": "c"}), math.nan, None),
               Sample("up", math.inf, None), Sample("down", -math.inf, None),
               Sample("load.load1", 0.75, 2.0)]
    text = prometheus_text(samples, counters={"net-eth0:rx"}, help={"up": "is it\nup \\"})
    assert text == (
        "# HELP smanager_load_load1 load.load1\n# TYPE smanager_load_load1 gauge\n"
        "smanager_load_load1 0.75\n"
        "# HELP smanager_net_eth0_rx_total net-eth0:rx\n# TYPE smanager_net_eth0_rx_total counter\n"
        "smanager_net_eth0_rx_total 10.0\n"
        "# HELP smanager_disk_used disk.used\n# TYPE smanager_disk_used gauge\n"
        'smanager_disk_used{dev="a\\"b",mount_point="/"} 1e+20\n'
        'smanager_disk_used{dev="c",mount_point="/var"} NaN\n'
        "# HELP smanager_up is it\\nup \\\\\n# TYPE smanager_up gauge\nsmanager_up +Inf\n"
        "# HELP smanager_down down\n# TYPE smanager_down gauge\nsmanager_down -Inf\n")
    assert prometheus_name("2xx", prefix="") == "_2xx"


def test_prometheus_text_is_read_back_the_same():
    samples = [Sample("requests_total", 7.0, None), Sample("temp", -1.5, None),
               Sample(labelled("disk_used", {"dev": 'a"\\b\nc', "mount": "/"}), 3.0, None),
               Sample("gone", math.nan, None)]
    text = prometheus_text(samples, {"requests_total"}, prefix="")
    got, counters, problems = read_prometheus(text)
    same(got, samples)
    assert counters == {"requests_total"} and problems == []


def test_promtool_accepts_the_exposition_text():
    need("promtool")
    samples = [Sample("load.load1", 0.5, None), Sample("net.eth0.rx_bytes", 1e20, None),
               Sample(labelled("disk.free", {"mount": "/", "dev": 'sda "1"\\'}), math.nan, None),
               Sample(labelled("disk.free", {"mount": "/var", "dev": "sdb"}), math.inf, None)]
    text = prometheus_text(samples, counters={"net.eth0.rx_bytes"},
                           help={"load.load1": "1-minute load"})
    checked = subprocess.run([shutil.which("promtool"), "check", "metrics"], input=text,
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
