"""Generation from a checkpoint: pretrained continuation, instructions (alpaca template), case files.

CaMA was used three ways, and so is this module:

- continuation: the text is the prompt (the pretrained model, ``{"prompt"}`` cases);
- instruction: the alpaca template around an instruction and an optional input (the LoRA-tuned
  model, ``{"instruction", "input"?}`` cases);
- information extraction: instructions built from a schema (``--run-ie-cases``, :mod:`train.ie_eval`).

Decoding defaults are CaMA's (``num_beams`` 2, ``temperature`` 0.2, ``top_p`` 0.75, ``top_k`` 40,
``repetition_penalty`` 1.3, ``max_new_tokens`` 512). CaMA passed temperature/top-p/top-k without
``do_sample``, so transformers ran a plain beam search and ignored them; here they take effect only
with ``--sample``, and are validated either way.

Every output reports how it ended: ``finish`` is ``"eos"`` when the model wrote EOS, ``"length"``
when it was cut at ``max_new_tokens`` (CaMA marked its published cases that way), ``"stopped"``
when a caller cancelled it (the web page's Stop).

CLI::

    python -m train.generate --base DIR [--lora DIR] [--load-8bit] [--interactive]
                             [--cases FILE --out FILE] [--run-ie-cases FILE [--out FILE]]

Bad input fails before generation with one line naming what to fix: an adapter made for another
base model, a decoding value out of range, a case file without a valid line. A bad case line is
reported as ``file:line: reason`` and skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Union

from train.files import read_json_object, write_jsonl_atomic

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
MODES = ("auto", "instruction", "continuation")
FINISH = ("eos", "length", "stopped")
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


class GenerateError(ValueError):
    """Generation cannot start: a bad model folder, adapter, decoding value or case file."""


# --------------------------------------------------------------------------------------------
# Decoding settings


@dataclass
class Decoding:
    """Decoding settings; CaMA's defaults. Out-of-range values raise GenerateError naming the key."""

    num_beams: int = 2
    temperature: float = 0.2
    top_p: float = 0.75
    top_k: int = 40
    repetition_penalty: float = 1.3
    max_new_tokens: int = 512
    do_sample: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = {"int": int, "float": float, "bool": bool}[f.type if isinstance(f.type, str) else f.type.__name__]
            # bool is an int in Python; neither belongs where the other is expected.
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok:
                    setattr(self, f.name, float(value))
            if not ok:
                what = {int: "an integer", float: "a number", bool: "true or false"}[kind]
                raise GenerateError(f"{f.name} must be {what}, got {value!r}")
        checks = (
            ("num_beams", self.num_beams >= 1, "≥ 1"),
            ("temperature", self.temperature > 0, "> 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("top_k", self.top_k >= 0, "≥ 0 (0 turns top-k off)"),
            ("repetition_penalty", self.repetition_penalty > 0, "> 0 (1 means no penalty)"),
            ("max_new_tokens", self.max_new_tokens >= 1, "≥ 1"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise GenerateError(f"{name} must be {rule}, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "decoding") -> "Decoding":
        """From a mapping (the web page's request); unknown keys are refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GenerateError(f"{where}: unknown decoding key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    def generation_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"num_beams": self.num_beams, "repetition_penalty": self.repetition_penalty,
                                  "max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k)
        return kwargs


# --------------------------------------------------------------------------------------------
# Loading


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerateError(f"device {device!r}: no CUDA device is visible")
    return device


def pick_dtype(device: str, dtype: str = "auto") -> Any:
    """fp32 on CPU; bf16 on a GPU that has it, else fp16."""
    import torch

    names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype != "auto":
        if dtype not in names:
            raise GenerateError(f"dtype must be auto, {', '.join(names)}; got {dtype!r}")
        return names[dtype]
    if device == "cpu":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _same_base(recorded: str, base: Path) -> bool:
    """An adapter records the base as the path (or hub name) it was trained from; the same model
    may sit elsewhere on this machine, so the folder name is what has to match."""
    rec = Path(recorded)
    try:
        if rec.exists() and os.path.samefile(rec, base):
            return True
    except OSError:
        pass
    return rec.name.lower() == base.resolve().name.lower()


def adapter_tensor_shapes(lora_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of an adapter's weights, read from the file header (no weights loaded
    for safetensors)."""
    for name in ADAPTER_WEIGHTS:
        path = lora_dir / name
        if not path.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors import safe_open

                with safe_open(str(path), framework="pt") as f:
                    return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            return {k: tuple(v.shape) for k, v in state.items()}
        except Exception as exc:  # safetensors and torch raise several types for a damaged file
            raise GenerateError(f"{path}: cannot read the adapter weights ({type(exc).__name__}: {exc})") from exc
    raise GenerateError(f"{lora_dir}: no {' or '.join(ADAPTER_WEIGHTS)} (a peft save_pretrained folder has one)")


def check_adapter(lora_dir: PathLike, base_dir: PathLike, model: Any, ignore_base_name: bool = False) -> dict[str, Any]:
    """Refuse an adapter that was not made for ``model`` (loaded from ``base_dir``) before peft
    touches it: peft would otherwise fail deep inside with a size-mismatch traceback, or, for a
    missing module, silently leave it unadapted. Returns the adapter config."""
    lora_dir, base_dir = Path(lora_dir), Path(base_dir)
    if not lora_dir.is_dir():
        raise GenerateError(f"--lora {lora_dir}: not a folder")
    cfg = read_json_object(lora_dir / ADAPTER_CONFIG, GenerateError, "adapter config")
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise GenerateError(f"{lora_dir / ADAPTER_CONFIG}: peft_type is {cfg.get('peft_type')!r}, not LORA")
    recorded = cfg.get("base_model_name_or_path")
    if recorded and not ignore_base_name and not _same_base(str(recorded), base_dir):
        raise GenerateError(
            f"--lora {lora_dir} was made for the base model {recorded!r}, not {str(base_dir)!r} "
            f"(base_model_name_or_path in {ADAPTER_CONFIG}); pass --ignore-base-name if it is the same model "
            "under another name")
    shapes = adapter_tensor_shapes(lora_dir)
    modules = dict(model.named_modules())
    for key, shape in sorted(shapes.items()):
        for part in (".lora_A.", ".lora_B."):
            if part not in key:
                continue
            name = key.split(part)[0]
            for prefix in ("base_model.model.", "base_model."):
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    break
            module = modules.get(name)
            if module is None:
                raise GenerateError(f"--lora {lora_dir}: tensor {key} adapts module {name!r}, which the base model "
                                    f"{base_dir} does not have: the adapter was made for another base model")
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            if in_f is None or out_f is None:
                raise GenerateError(f"--lora {lora_dir}: tensor {key} adapts {name!r}, which is not a linear layer "
                                    f"in {base_dir}")
            got, want = (shape[1], in_f) if part == ".lora_A." else (shape[0], out_f)
            if len(shape) != 2 or got != want:
                side = "in_features" if part == ".lora_A." else "out_features"
                raise GenerateError(f"--lora {lora_dir}: tensor {key} has shape {list(shape)}, but {name} of the base "
                                    f"model {base_dir} has {side} {want}: the adapter was made for another base model")
    if not any(".lora_A." in k for k in shapes):
        raise GenerateError(f"--lora {lora_dir}: the adapter holds no lora_A/lora_B tensors")
    return cfg


def load_model(base: PathLike, lora: PathLike | None = None, load_8bit: bool = False, device: str = "auto",
               dtype: str = "auto", ignore_base_name: bool = False) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer padding on the left) from an HF checkpoint folder and an
    optional peft LoRA adapter."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from train.tokenizer import check_vocab, load_tokenizer

    base = Path(base)
    if not (base / "config.json").is_file():
        raise GenerateError(f"--base {base}: no config.json (expected a Hugging Face checkpoint folder)")
    device = pick_device(device)
    if load_8bit:
        if not device.startswith("cuda"):
            raise GenerateError("--load-8bit needs a CUDA GPU (bitsandbytes' 8-bit kernels do not run on the CPU); "
                                "drop --load-8bit to load in fp32 on the CPU")
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise GenerateError("--load-8bit needs the bitsandbytes package, which is not installed")
    torch_dtype = pick_dtype(device, dtype)
    tokenizer = load_tokenizer(base, padding_side="left")
    config = AutoConfig.from_pretrained(str(base))
    check_vocab(tokenizer, config.vocab_size, str(base))
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if load_8bit:
        from transformers import BitsAndBytesConfig

        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map={"": device})
    model = AutoModelForCausalLM.from_pretrained(str(base), **kwargs)
    if not load_8bit:
        model.to(device)
    if lora is not None:
        check_adapter(lora, base, model, ignore_base_name)
        from peft import PeftModel

        with warnings.catch_warnings():
            # peft calls a transformers API deprecated in v5; the warning says nothing to a user.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model = PeftModel.from_pretrained(model, str(lora), is_trainable=False)
    model.eval()  # generate() itself runs without gradients
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# Generating


@dataclass
class Output:
    text: str
    finish: str          # eos | length | stopped
    new_tokens: int


class Generator:
    """A loaded model with its tokenizer and prompt template: prompts in, :class:`Output`s out."""

    def __init__(self, model: Any, tokenizer: Any, template: Any = None, default_mode: str = "continuation") -> None:
        from train.prompts import load_template

        self.model = model
        self.tokenizer = tokenizer
        self.template = template or load_template("alpaca")
        if default_mode not in ("instruction", "continuation"):
            raise GenerateError(f"mode must be instruction or continuation, got {default_mode!r}")
        self.default_mode = default_mode
        self.lock = threading.Lock()

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def prompt(self, instruction: str | None = None, input: str | None = None, prompt: str | None = None) -> str:
        """The model input: ``prompt`` as is (continuation) or the template around an instruction."""
        if prompt is not None:
            return prompt
        if instruction is None:
            raise GenerateError("either a prompt or an instruction is needed")
        return self.template.prompt(instruction, input or None)

    def _generate_kwargs(self, decoding: Decoding) -> dict[str, Any]:
        tok = self.tokenizer
        return {**decoding.generation_kwargs(), "pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id,
                "bos_token_id": tok.bos_token_id}

    def _finish(self, new_ids: Sequence[int], decoding: Decoding, stopped: bool = False) -> Output:
        eos = self.tokenizer.eos_token_id
        ids = list(new_ids)
        if eos in ids:
            ids, finish = ids[:ids.index(eos)], "eos"
        else:
            # Rows that finished early are padded to the longest; a cut row has max_new_tokens.
            finish = "stopped" if stopped and len(ids) < decoding.max_new_tokens else "length"
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        return Output(text, finish, len(ids))

    def generate(self, prompts: Sequence[str], decoding: Decoding | None = None,
                 stop: threading.Event | None = None) -> list[Output]:
        """One batch (left-padded); outputs in the order of ``prompts``."""
        decoding = decoding or Decoding()
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True).to(self.device)
        kwargs = self._generate_kwargs(decoding)
        if stop is not None:
            kwargs["stopping_criteria"] = _stopping(stop)
        with self.lock:
            out = self.model.generate(**enc, **kwargs)
        width = enc["input_ids"].shape[1]
        stopped = stop is not None and stop.is_set()
        return [self._finish(row[width:].tolist(), decoding, stopped) for row in out]

    def stream(self, prompt: str, decoding: Decoding | None = None,
               stop: threading.Event | None = None) -> Iterator[str | Output]:
        """Text pieces as they are generated, then the :class:`Output`. Beam search cannot stream
        (the best beam is known only at the end): with ``num_beams`` > 1 the whole answer comes as
        one piece when it is complete."""
        decoding = decoding or Decoding()
        if decoding.num_beams > 1:
            result = self.generate([prompt], decoding, stop)[0]
            if result.text:
                yield result.text
            yield result
            return
        from transformers import TextIteratorStreamer

        enc = self.tokenizer([prompt], return_tensors="pt").to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = stop if stop is not None else threading.Event()
        kwargs = {**enc, **self._generate_kwargs(decoding), "streamer": streamer, "stopping_criteria": _stopping(stop)}
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                with self.lock:
                    box["out"] = self.model.generate(**kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc
                streamer.end()

        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        except GeneratorExit:
            stop.set()  # the caller stopped reading: do not generate for nobody
            raise
        thread.join()
        if "error" in box:
            raise box["error"]
        width = enc["input_ids"].shape[1]
        yield self._finish(box["out"][0][width:].tolist(), decoding, stop.is_set())


def _stopping(stop: threading.Event) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            import torch

            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancel()])


# --------------------------------------------------------------------------------------------
# Case files


@dataclass
class Case:
    where: str           # file:line
    record: dict[str, Any]
    mode: str            # instruction | continuation

    @property
    def id(self) -> Any:
        return self.record.get("id")


def _check_case(obj: Any) -> tuple[str | None, str]:
    """The case's mode, or None and why it is refused."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    if "prompt" in obj and "instruction" in obj:
        return None, "both 'prompt' and 'instruction' (one case is either a continuation or an instruction)"
    key = "prompt" if "prompt" in obj else "instruction" if "instruction" in obj else None
    if key is None:
        return None, "neither 'prompt' (continuation) nor 'instruction'"
    if not isinstance(obj[key], str) or not obj[key].strip():
        return None, f"'{key}' must be a non-empty string"
    if "input" in obj and obj["input"] is not None and not isinstance(obj["input"], str):
        return None, "'input' must be a string"
    if key == "prompt" and obj.get("input"):
        return None, "'input' goes with 'instruction', not with 'prompt'"
    if "id" in obj and not isinstance(obj["id"], (str, int)):
        return None, "'id' must be a string or an integer"
    return ("continuation" if key == "prompt" else "instruction"), ""


def read_cases(path: PathLike) -> tuple[list[Case], list[str]]:
    """Valid cases and the ``file:line: reason`` of each bad line (skipped). Raises GenerateError
    for a missing file or one without a valid case."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GenerateError(f"case file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{path}: not readable UTF-8 text ({exc})") from exc
    cases, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            bad.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        mode, reason = _check_case(obj)
        if mode is None:
            bad.append(f"{where}: {reason}")
            continue
        cases.append(Case(where, obj, mode))
    if not cases:
        detail = f"; {len(bad)} bad line(s), the first: {bad[0]}" if bad else " (the file is empty)"
        raise GenerateError(f"{path}: no valid case{detail}")
    return cases, bad


def run_cases(generator: Generator, cases: Sequence[Case], decoding: Decoding, batch_size: int = 8,
              progress: bool = False) -> list[dict[str, Any]]:
    """Each case's record with ``output``, ``finish`` and ``new_tokens`` added, in file order.

    Cases are generated in batches of similar prompt length (less padding); batched beam search
    with left padding may differ in the last digits from one-by-one generation."""
    if batch_size < 1:
        raise GenerateError(f"batch_size must be ≥ 1, got {batch_size}")
    prompts = [generator.prompt(c.record.get("instruction"), c.record.get("input"), c.record.get("prompt"))
               for c in cases]
    lengths = [len(generator.tokenizer(p)["input_ids"]) for p in prompts]
    order = sorted(range(len(cases)), key=lambda i: lengths[i])
    results: list[dict[str, Any] | None] = [None] * len(cases)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cases), unit="case", file=sys.stderr)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        outputs = generator.generate([prompts[i] for i in chunk], decoding)
        for i, out in zip(chunk, outputs):
            results[i] = {**cases[i].record, "mode": cases[i].mode, "output": out.text, "finish": out.finish,
                          "new_tokens": out.new_tokens}
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------------------------
# Interactive


def interactive(generator: Generator, decoding: Decoding, mode: str, stream: bool = True,
                stdin: Any = None, stdout: Any = None, stderr: Any = None) -> int:
    """Read prompts (continuation) or instruction + optional input (instruction mode) until EOF or
    an empty prompt; print the answer as it is generated. A continuation prompt is one line: ``\\n``
    in it stands for a newline (few-shot prompts)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    tty = hasattr(stdin, "isatty") and stdin.isatty()
    if stream and decoding.num_beams > 1:
        print(f"note: beam search (num_beams={decoding.num_beams}) cannot stream: each answer appears when it is "
              "complete; pass --num-beams 1 to see tokens as they are generated", file=stderr)

    def ask(label: str) -> str | None:
        if tty:
            stdout.write(label)
            stdout.flush()
        line = stdin.readline()
        return None if not line else line.rstrip("\n")

    count = 0
    while True:
        if mode == "instruction":
            instruction = ask("instruction> ")
            if not instruction:
                break
            inp = ask("input (Enter for none)> ")
            prompt = generator.prompt(instruction, inp or None)
        else:
            text = ask("prompt> ")
            if not text:
                break
            prompt = generator.prompt(prompt=text.replace("\\n", "\n"))
        result = None
        if stream:
            for piece in generator.stream(prompt, decoding):
                if isinstance(piece, Output):
                    result = piece
                else:
                    stdout.write(piece)
                    stdout.flush()
        else:
            result = generator.generate([prompt], decoding)[0]
            stdout.write(result.text)
        stdout.write("\n")
        stdout.flush()
        assert result is not None
        print(f"[finish: {result.finish}, {result.new_tokens} new tokens]", file=stderr)
        count += 1
    return count


# --------------------------------------------------------------------------------------------
# CLI


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options shared with ``python -m train.web``."""
    p.add_argument("--base", required=True, help="Hugging Face checkpoint folder (config.json, weights, tokenizer)")
    p.add_argument("--lora", help="peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--load-8bit", action="store_true", help="load the base in 8 bits (bitsandbytes, CUDA only)")
    p.add_argument("--device", default="auto", help="auto (cuda if visible, else cpu), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                   help="auto: bf16/fp16 on GPU, fp32 on CPU")
    p.add_argument("--ignore-base-name", action="store_true",
                   help="load an adapter whose recorded base_model_name_or_path names another folder "
                        "(shapes are still checked)")
    p.add_argument("--template", default="alpaca", help="prompt template name or JSON file (default alpaca)")
    p.add_argument("--mode", default="auto", choices=MODES,
                   help="interactive/web prompts: instruction (template) or continuation; auto: instruction "
                        "with --lora, else continuation")
    d = Decoding()
    p.add_argument("--num-beams", type=int, default=d.num_beams)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--sample", action="store_true",
                   help="sample (temperature, top-p, top-k apply); without it, beam search / greedy as CaMA ran")


def decoding_from_args(args: argparse.Namespace) -> Decoding:
    return Decoding(num_beams=args.num_beams, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                    repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens,
                    do_sample=args.sample)


def generator_from_args(args: argparse.Namespace) -> Generator:
    from train.prompts import load_template

    template = load_template(args.template)
    model, tokenizer = load_model(args.base, args.lora, args.load_8bit, args.device, args.dtype, args.ignore_base_name)
    mode = args.mode if args.mode != "auto" else ("instruction" if args.lora else "continuation")
    return Generator(model, tokenizer, template, mode)


def user_errors() -> tuple[type[BaseException], ...]:
    from train.ie import IEError
    from train.ie_eval import IECaseError
    from train.prompts import TemplateError
    from train.tokenizer import TokenizerError

    return (GenerateError, TokenizerError, TemplateError, IEError, IECaseError)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.generate", description=__doc__.split("\n\n")[0])
    add_model_args(p)
    what = p.add_argument_group("what to run (one of)")
    what.add_argument("--interactive", action="store_true", help="read prompts from stdin, stream the answers")
    what.add_argument("--cases", help="JSON lines: {\"prompt\"} or {\"instruction\", \"input\"?}, optional \"id\"")
    what.add_argument("--run-ie-cases", metavar="FILE", help="IE cases with gold answers: print P/R/F1 per task")
    p.add_argument("--out", help="output JSON lines (required with --cases; optional with --run-ie-cases)")
    p.add_argument("--batch-size", type=int, default=8, help="cases generated together (default 8)")
    p.add_argument("--no-stream", action="store_true", help="interactive: print each answer when complete")
    args = p.parse_args(argv)
    chosen = [x for x in ("interactive", "cases", "run_ie_cases") if getattr(args, x)]
    if len(chosen) != 1:
        p.error("choose exactly one of --interactive, --cases FILE, --run-ie-cases FILE")
    if args.cases and not args.out:
        p.error("--cases needs --out FILE")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        decoding = decoding_from_args(args)
        if args.batch_size < 1:
            raise GenerateError(f"--batch-size must be ≥ 1, got {args.batch_size}")
        if args.cases:
            cases, bad = read_cases(args.cases)   # before the model: a bad file fails fast
            for line in bad:
                print(f"skipped {line}", file=sys.stderr)
            generator = generator_from_args(args)
            results = run_cases(generator, cases, decoding, args.batch_size, progress=sys.stderr.isatty())
            write_jsonl_atomic(results, args.out)
            counts = {f: sum(r["finish"] == f for r in results) for f in FINISH}
            print(f"{len(results)} cases → {args.out} (eos {counts['eos']}, length {counts['length']}); "
                  f"{len(bad)} bad line(s) skipped", file=sys.stderr)
            return 0
        if args.run_ie_cases:
            from train import ie_eval

            ie_cases, bad = ie_eval.read_ie_cases(args.run_ie_cases)
            for line in bad:
                print(f"skipped {line}", file=sys.stderr)
            generator = generator_from_args(args)
            report = ie_eval.run_ie_cases(generator, ie_cases, decoding, args.batch_size)
            print(ie_eval.format_table(report.scores))
            if args.out:
                write_jsonl_atomic(report.records, args.out)
            return 0
        generator = generator_from_args(args)
        interactive(generator, decoding, generator.default_mode, stream=not args.no_stream)
        return 0
    except Exception as exc:
        if isinstance(exc, user_errors()):
            print(f"python -m train.generate: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
