"""The foundation package: typed configs all the way down, --set, atomic writes, markers, JSON lines."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from common import atomic, markers
from common.cli import Parser, add_config_options, config_from_args, run
from common.config import apply_sets, format_config, from_dict, load_config, to_dict
from common.errors import ConfigError, InputDataError, UserError
from common.jsonl import BadLine, iter_jsonl, read_json_object, write_jsonl


@dataclass
class Rope:
    theta: float = 10000.0
    kind: Literal["default", "linear"] = "default"


@dataclass
class Model:
    hidden_size: int = 4096
    num_layers: int = 32
    rope: Rope = field(default_factory=Rope)


@dataclass
class Source:
    name: str
    weight: float = 1.0


@dataclass
class Job:
    output_dir: str
    model_config: Model = field(default_factory=Model)
    sources: list[Source] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_nested_typo_is_named_with_its_path_and_a_suggestion(tmp_path: Path) -> None:
    p = write(tmp_path, "output_dir: x\nmodel_config: {hiden_size: 64}\n")
    with pytest.raises(ConfigError) as e:
        load_config(Job, p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: model_config: unknown key 'hiden_size' (did you mean 'hidden_size'?;")
    assert "known keys: hidden_size, num_layers, rope" in msg


def test_two_levels_down_and_list_items(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"job.yaml: model_config.rope: key 'kind': 'linaer' is not one of "
                                          r"default, linear \(did you mean 'linear'\?\)"):
        load_config(Job, write(tmp_path, "output_dir: x\nmodel_config: {rope: {kind: linaer}}\n"))
    with pytest.raises(ConfigError, match=r"job.yaml: sources\[1\]: unknown key 'wieght'"):
        load_config(Job, write(tmp_path, "output_dir: x\nsources: [{name: a}, {name: b, wieght: 2}]\n"))
    with pytest.raises(ConfigError, match=r"job.yaml: env: key 'A': expected a string"):
        load_config(Job, write(tmp_path, "output_dir: x\nenv: {A: [1]}\n"))


def test_values_and_post_init_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"job.yaml: model_config: key 'hidden_size': expected an integer"):
        load_config(Job, write(tmp_path, "output_dir: x\nmodel_config: {hidden_size: wide}\n"))
    with pytest.raises(ConfigError, match=r"job.yaml: steps must be >= 1, got 0"):
        load_config(Job, write(tmp_path, "output_dir: x\nsteps: 0\n"))
    with pytest.raises(ConfigError, match=r"job.yaml: missing required key 'output_dir'"):
        load_config(Job, write(tmp_path, "steps: 3\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Job, write(tmp_path, "a: [\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Job, tmp_path / "nope.yaml")


def test_set_overrides_nested_keys_and_blames_itself(tmp_path: Path) -> None:
    p = write(tmp_path, "output_dir: x\nsources: [{name: a}]\n")
    cfg = load_config(Job, p, sets=["model_config.hidden_size=64", "model_config.rope.theta=5e5",
                                    "sources[0].weight=2", "env.HOME=/h", "steps=3"])
    assert cfg.model_config.hidden_size == 64 and cfg.model_config.rope.theta == 5e5
    assert cfg.sources[0].weight == 2.0 and cfg.env == {"HOME": "/h"} and cfg.steps == 3
    with pytest.raises(ConfigError, match=r"--set model_config.hiden_size=64 in model_config: unknown key "
                                          r"'hiden_size' \(did you mean 'hidden_size'"):
        load_config(Job, p, sets=["model_config.hiden_size=64"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        load_config(Job, p, sets=["steps"])
    with pytest.raises(ConfigError, match=r"has no item \[3\]"):
        load_config(Job, p, sets=["sources[3].weight=1"])
    with pytest.raises(ConfigError, match=r"key 'steps': expected an integer, got 'many'"):
        load_config(Job, p, sets=["steps=many"])


def test_apply_sets_leaves_the_input_alone() -> None:
    values = {"output_dir": "x", "model_config": {"hidden_size": 8}}
    out = apply_sets(Job, dict(values), ["model_config.hidden_size=16"])
    assert values["model_config"]["hidden_size"] == 8 and out["model_config"]["hidden_size"] == 16


def test_round_trip_and_print_config(tmp_path: Path) -> None:
    cfg = load_config(Job, write(tmp_path, "output_dir: out\nmodel_config: {hidden_size: 64}\n"
                                           "sources: [{name: wiki, weight: 0.5}]\n"))
    assert from_dict(Job, json.loads(json.dumps(to_dict(cfg)))) == cfg
    text = format_config(cfg)
    assert "output_dir: out  # required" in text
    assert "  hidden_size: 64  # default: 4096" in text
    assert "  num_layers: 32\n" in text
    assert "  - name: wiki  # required\n    weight: 0.5  # default: 1.0" in text


def test_parser_refuses_abbreviations_and_run_prints_one_line(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    p = Parser(prog="x")
    p.add_argument("--output")
    sub = p.add_subparsers()
    s = sub.add_parser("go")
    s.add_argument("--output-dir")
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "y"])
    with pytest.raises(SystemExit):
        p.parse_args(["go", "--output", "y"])
    capsys.readouterr()

    def bad() -> int:
        raise ConfigError("job.yaml: unknown key 'x'")
    assert run("cama-x", bad) == 2
    assert capsys.readouterr().err == "cama-x: error: job.yaml: unknown key 'x'\n"

    def bug() -> int:
        raise KeyError("bug")
    with pytest.raises(KeyError):
        run("cama-x", bug)

    q = Parser(prog="y")
    add_config_options(q)
    args = q.parse_args(["--config", str(write(tmp_path, "output_dir: o\n")), "--set", "steps=2"])
    assert config_from_args(Job, args, {"output_dir": None}).steps == 2


def test_user_errors_keep_their_builtin_bases() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, UserError)
    assert issubclass(InputDataError, ValueError)


def test_atomic_write_leaves_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic.write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(target) as f:
            f.write('{"v": 2')
            raise RuntimeError("crash")
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_stale_temps_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / f"c.bin.tmp.{pid}").write_bytes(b"x" * 10)
    (tmp_path / f"c.idx.tmp.{pid}.lengths").write_bytes(b"x")
    (tmp_path / f"run.tmp-{pid}").mkdir()
    (tmp_path / f"live.bin.tmp.{os.getpid()}").write_bytes(b"x")
    (tmp_path / "c.bin").write_bytes(b"x")
    gone = atomic.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in gone) == sorted([f"c.bin.tmp.{pid}", f"c.idx.tmp.{pid}.lengths", f"run.tmp-{pid}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.bin", f"live.bin.tmp.{os.getpid()}"]


def test_atomic_dir(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic.atomic_dir(target) as tmp:
        (tmp / "f").write_text("1")
    assert (target / "f").read_text() == "1"
    with pytest.raises(FileExistsError):
        with atomic.atomic_dir(target):
            pass
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(target, replace=True) as tmp:
            (tmp / "f").write_text("2")
            raise RuntimeError
    assert (target / "f").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_markers_and_seals(tmp_path: Path) -> None:
    @dataclass
    class C:
        a: int
        p: Path
    fp = markers.fingerprint(C(1, Path("x")), {"b": [1, 2]})
    assert fp == markers.fingerprint({"a": 1, "p": "x"}, {"b": [1, 2]})
    assert fp != markers.fingerprint(C(2, Path("x")), {"b": [1, 2]})
    m = tmp_path / "done.json"
    assert markers.read_marker(m, fp) is None
    markers.write_marker(m, fp, docs=3)
    assert markers.read_marker(m, fp)["docs"] == 3 and markers.read_marker(m, "other") is None
    m.write_text("{trunc")
    assert markers.read_marker(m) is None

    folder = tmp_path / "ckpt"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "w.bin").write_bytes(b"1234")
    assert markers.read_seal(folder) is None
    markers.seal(folder, step=7)
    assert markers.read_seal(folder)["files"] == {"sub/w.bin": 4}
    (folder / "sub" / "w.bin").write_bytes(b"12")
    assert markers.read_seal(folder) is None


def test_jsonl_reading_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_bytes(b'{"a": 1}\n\n[1]\n' + b"[" * 5000 + b"\n" + b'{"a": "\xff"}\n{"b": 2}\n')
    items = list(iter_jsonl(p, on_error="skip"))
    assert [n for n, _ in items] == [1, 3, 4, 5, 6]
    reasons = [x.reason if isinstance(x, BadLine) else "ok" for _, x in items]
    assert reasons == ["ok", "not_object", "invalid_json", "not_utf8", "ok"]
    with pytest.raises(InputDataError, match=rf"{p}:3: not_object"):
        list(iter_jsonl(p))
    write_jsonl([{"z": "中"}], tmp_path / "o.jsonl")
    assert (tmp_path / "o.jsonl").read_text(encoding="utf-8") == '{"z": "中"}\n'
    (tmp_path / "o.json").write_text("[1]")
    with pytest.raises(InputDataError, match="expected a JSON object"):
        read_json_object(tmp_path / "o.json")
    with pytest.raises(InputDataError, match="file not found"):
        read_json_object(tmp_path / "none.json")


def test_common_imports_nothing_of_the_project() -> None:
    code = ("import sys, common, common.cli, common.config, common.atomic, common.markers, common.jsonl;"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('corpus', 'train', 'recover', 'hpc', 'torch')];"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.strip() == "[]"


def test_set_steps_into_the_dataclass_member_of_a_union(tmp_path: Path) -> None:
    @dataclass
    class Run:
        model: Model | str | None = None
    with pytest.raises(ConfigError, match=r"--set model.hiden_size=8 in model: unknown key 'hiden_size' "
                                          r"\(did you mean 'hidden_size'"):
        load_config(Run, None, sets=["model.hiden_size=8"])
    assert load_config(Run, None, sets=["model.hidden_size=8"]).model.hidden_size == 8
    assert load_config(Run, None, sets=["model=path/config.json"]).model == "path/config.json"
