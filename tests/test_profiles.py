"""Cluster profiles: the shipped ones load, and every kind of mistake names its file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from common.config import ConfigError
from hpc.profiles import (
    Partition,
    available_profiles,
    format_minutes,
    load_profile,
    parse_mem_mb,
    parse_time_min,
)

DEV = {
    "name": "mini",
    "default_partition": "debug",
    "partitions": {"debug": {"nodes": 2, "cpus_per_node": 4, "mem_per_node": "4G", "gpus_per_node": 2}},
}


def write(tmp_path: Path, data: dict, name: str = "mini.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_shipped_profiles_load_with_their_resources():
    assert {"cama_3x8v100", "dev"} <= set(available_profiles())
    cama = load_profile("cama_3x8v100")
    gpu = cama.partition()
    assert (gpu.nodes, gpu.gpus_per_node, gpu.gpu_type) == (3, 8, "v100")
    assert gpu.mem_mb >= 250 * 1024 and gpu.cpus_per_node >= 32
    assert cama.signal_lead_s > 0 and cama.requeue_limit > 0 and cama.setup
    dev = load_profile("dev")
    debug = dev.partition("debug")
    assert (debug.nodes, debug.gpus_per_node, debug.gpu_type, debug.cpus_per_node) == (3, 8, "v100", 16)
    assert debug.mem_mb <= 6000  # what the dev cluster's nodes declare
    assert all(isinstance(v, str) for v in dev.env.values())


def test_profile_by_path_and_default_name_from_file(tmp_path):
    data = dict(DEV)
    del data["name"]
    profile = load_profile(write(tmp_path, data, "lab.yaml"))
    assert profile.name == "lab" and profile.partition().nodes == 2


def test_default_profile_follows_env(monkeypatch):
    monkeypatch.setenv("CAMA_CLUSTER", "cama_3x8v100")
    assert load_profile().name == "cama_3x8v100"
    monkeypatch.delenv("CAMA_CLUSTER")
    assert load_profile().name == "dev"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(colour="red"), "mini.yaml: unknown key 'colour'"),
    (lambda d: d["partitions"]["debug"].update(gpu_per_node=8), "mini.yaml: partitions.debug: unknown key 'gpu_per_node'"),
    (lambda d: d["partitions"]["debug"].update(mem_per_node="lots"), "partitions.debug: key 'mem_per_node'"),
    (lambda d: d["partitions"]["debug"].update(time_limit="1:xx"), "partitions.debug: key 'time_limit'"),
    (lambda d: d["partitions"]["debug"].update(nodes="three"), "partitions.debug: key 'nodes': expected an integer"),
    (lambda d: d["partitions"]["debug"].update(nodes=0), "key 'nodes': must be >= 1"),
    (lambda d: d["partitions"]["debug"].pop("cpus_per_node"), "missing required key 'cpus_per_node'"),
    (lambda d: d.update(default_partition="gpu"), "key 'default_partition': 'gpu' is not one of the partitions"),
    (lambda d: d.update(cpu_partition="cpu"), "key 'cpu_partition': 'cpu' is not one of the partitions"),
    (lambda d: d.update(partitions=[]), "key 'partitions': expected a mapping"),
    (lambda d: d.pop("partitions"), "missing required key 'partitions'"),
    (lambda d: d.update(env={"BAD NAME": "x"}), "env: 'BAD NAME' is not a valid environment variable name"),
    (lambda d: d.update(env={"A": [1]}), "env.A: expected a string"),
    (lambda d: d.update(setup="module load x"), None),  # a single line is the short form of a list
    (lambda d: d.update(signal_lead_s=-1), "key 'signal_lead_s': must be >= 0"),
])
def test_bad_profiles_name_the_key(tmp_path, mutate, message):
    data = yaml.safe_load(yaml.safe_dump(DEV))
    mutate(data)
    path = write(tmp_path, data)
    if message is None:
        assert load_profile(path).setup == ["module load x"]
        return
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert message in str(err.value)


def test_unknown_profile_and_partition_list_what_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"no cluster profile 'nope'.*cama_3x8v100, dev"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="cluster profile file not found"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"unknown partition 'gpu' in cluster profile 'dev' \(it has: debug\)"):
        load_profile("dev").partition("gpu")


def test_env_values_become_strings(tmp_path):
    profile = load_profile(write(tmp_path, {**DEV, "env": {"N": 1, "FLAG": True, "S": "x y"}}))
    assert profile.env == {"N": "1", "FLAG": "1", "S": "x y"}


@pytest.mark.parametrize("text, mb", [("250G", 256000), ("6000M", 6000), ("6000", 6000), ("1T", 1048576),
                                      ("1.5G", 1536), ("512K", 1), ("4gb", 4096)])
def test_parse_mem(text, mb):
    assert parse_mem_mb(text) == mb


@pytest.mark.parametrize("text, minutes", [("30", 30), ("30:00", 30), ("30:01", 31), ("1:00:00", 60),
                                           ("2-00", 2880), ("1-02:03", 1563), ("7-00:00:00", 10080),
                                           ("UNLIMITED", None), ("infinite", None), (45, 45)])
def test_parse_time(text, minutes):
    assert parse_time_min(text) == minutes


@pytest.mark.parametrize("bad", ["", "1:2:3:4", "x-1", "ten", "0", "-5", "1h"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError):
        parse_time_min(bad)


def test_format_minutes_round_trips():
    for m in (1, 59, 60, 1563, 10080):
        assert parse_time_min(format_minutes(m)) == m
    assert format_minutes(None) == "UNLIMITED"


def test_partition_is_typed():
    part = Partition(nodes=3, cpus_per_node=16, mem_per_node="6000M", time_limit="1:00:00")
    assert part.mem_mb == 6000 and part.time_limit_min == 60 and part.gpus_per_node == 0
