"""A small web page for a loaded model: instruction + optional input, a prompt to continue, or a
multi-turn chat, with decoding controls; the answer streamed as it is generated.

Standard library only (``http.server`` with a thread per request): the page is for a person trying
a checkpoint on a GPU node through an SSH tunnel, not a service. Generation is serialized (one
model, one request at a time; the others wait).

API:

- ``GET /`` the page (``train/web/index.html``, ``app.js``, ``style.css``);
- ``GET /api/info`` the mode, the decoding defaults, the model and adapter folders;
- ``POST /api/generate`` with JSON ``{"mode": "instruction"|"continuation", "instruction",
  "input"?, "decoding": {...}}`` (continuation: the ``instruction`` field holds the prompt), or
  ``{"mode": "chat", "messages": [{"role", "content"}, …], "decoding"}``: the conversation so far,
  ending with the user's message, which the server formats with the chat template (the page keeps
  the history and sends all of it each time; the oldest turns are left out, with a notice, when
  they would not fit the model). A bad request gets 400 and ``{"error"}`` before anything is
  generated; else the answer comes as Server-Sent Events: ``notice`` (beam search cannot stream,
  history left out), ``token`` ``{"text"}`` pieces, then ``done`` ``{"finish", "new_tokens",
  "seconds"}`` or ``error``. A client that goes away (the page's Stop) stops the generation.

CLI: ``python -m train.web --base DIR [--lora DIR] [--load-8bit] [--host 127.0.0.1] [--port 7860]``
plus the decoding options of ``python -m train.generate`` (the page's defaults).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

from common.cli import Parser, run
from common.jsonl import parse_json
from train.chat import ChatTemplateError, check_messages
from train.cli import add_model_args, decoding_from_args, generator_from_args
from train.generate import Decoding, GenerateError, Generator, Output

STATIC_DIR = Path(__file__).resolve().parent / "web"
# Only these files are served: no path from a request ever reaches the file system.
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
MAX_BODY = 1 << 20
REQUEST_MODES = ("instruction", "continuation", "chat")


class RequestError(ValueError):
    """A request the page should not have sent; answered with 400 and the message."""


@dataclass
class Request:
    mode: str             # instruction | continuation | chat
    instruction: str      # the prompt itself in continuation mode; "" in chat mode
    input: str
    decoding: Decoding
    messages: list[dict[str, str]] | None = None  # chat mode: the conversation, the user's message last


def parse_request(body: bytes, default_mode: str, defaults: Decoding | None = None) -> Request:
    """A generation request (decoding keys it leaves out take ``defaults``), or RequestError naming
    the field."""
    try:
        data = parse_json(body.decode("utf-8"))  # deep nesting is a ValueError too, not a RecursionError
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request body is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    unknown = sorted(set(data) - {"mode", "instruction", "input", "decoding", "messages"})
    if unknown:
        raise RequestError(f"unknown field {unknown[0]!r}")
    mode = data.get("mode") or default_mode
    if mode not in REQUEST_MODES:
        raise RequestError(f"mode must be instruction, continuation or chat, got {mode!r}")
    messages = None
    if mode == "chat":
        if "instruction" in data or "input" in data:
            raise RequestError("chat mode takes 'messages', not 'instruction' or 'input'")
        if "messages" not in data:
            raise RequestError("chat mode needs 'messages': the conversation, ending with the user's message")
        messages, reason, detail = check_messages(data["messages"], for_generation=True)
        if messages is None:
            raise RequestError(f"messages: {reason}" + (f" ({detail})" if detail else ""))
        instruction, inp = "", ""
    else:
        if "messages" in data:
            raise RequestError(f"'messages' goes with mode chat, not {mode}")
        instruction = data.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise RequestError("the instruction (or prompt) is empty" if isinstance(instruction, (str, type(None)))
                               else "instruction must be a string")
        inp = data.get("input") or ""
        if not isinstance(inp, str):
            raise RequestError("input must be a string")
    decoding = data.get("decoding") or {}
    if not isinstance(decoding, dict):
        raise RequestError("decoding must be an object")
    try:
        settings = Decoding.from_dict({**asdict(defaults or Decoding()), **decoding})
    except GenerateError as exc:
        raise RequestError(str(exc)) from None
    return Request(mode, instruction, inp, settings, messages)


class App:
    """What the handlers share: the generator, the page's decoding defaults, a description."""

    def __init__(self, generator: Generator, defaults: Decoding | None = None, info: dict[str, Any] | None = None):
        self.generator = generator
        self.defaults = defaults or Decoding()
        self.info = {"mode": generator.default_mode, "defaults": asdict(self.defaults), **(info or {})}
        self.finished: deque[Output] = deque(maxlen=100)  # the latest results, newest last
        self.prompts: deque[str] = deque(maxlen=100)      # the latest model inputs, newest last


def make_handler(app: App) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "cama-web/1"
        timeout = 120  # a client that announces a body and never sends it does not hold a thread forever

        # One line per request on stderr (no DNS lookups): http.server's error note ("code 400, message
        # …") joins the request's line instead of making a second one.
        def log_message(self, fmt: str, *args: Any) -> None:
            self._said = True
            sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

        def log_error(self, fmt: str, *args: Any) -> None:
            self._error = fmt % args

        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            error, self._error = getattr(self, "_error", None), None
            code = code.value if isinstance(code, HTTPStatus) else code
            self.log_message('"%s" %s %s%s', self.requestline, code, size, f" ({error})" if error else "")

        def handle(self) -> None:
            # A client that hangs up (before or while it is answered) or stalls: one line, not a traceback,
            # and none more when its request's line was written already.
            self._said, self._error = False, None
            try:
                super().handle()
            except (ConnectionError, TimeoutError) as exc:
                self.close_connection = True
                if not self._said:
                    self.log_message("connection lost: %s: %s", type(exc).__name__, exc)
            if self._error and not self._said:
                self.log_message("%s", self._error)

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/api/info":
                self._json(HTTPStatus.OK, app.info)
                return
            entry = STATIC.get(path)
            if entry is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
                return
            self._send(HTTPStatus.OK, (STATIC_DIR / entry[0]).read_bytes(), entry[1])

        def do_POST(self) -> None:
            if self.path != "/api/generate":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"the body must be 1 byte to {MAX_BODY} bytes of JSON"})
                return
            try:
                req = parse_request(self.rfile.read(length), app.generator.default_mode, app.defaults)
            except RequestError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                return
            g = app.generator
            notices = []
            if req.mode == "chat":
                try:
                    prompt, dropped = g.chat_prompt(req.messages, req.decoding.max_new_tokens)
                except ChatTemplateError as exc:   # the model's template refuses this conversation
                    self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                    return
                if dropped:
                    notices.append(f"the oldest {dropped} messages of the conversation were left out: with them "
                                   "the prompt and the answer would not fit the model")
            elif req.mode == "instruction":
                prompt = g.prompt(req.instruction, req.input)
            else:
                prompt = g.prompt(prompt=req.instruction)
            app.prompts.append(prompt)
            self._stream(prompt, req.decoding, notices)

        def _event(self, name: str, data: dict[str, Any]) -> None:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode("utf-8"))
            self.wfile.flush()

        def _stream(self, prompt: str, decoding: Decoding, notices: Sequence[str] = ()) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Accel-Buffering", "no")  # a proxy in front must not hold the stream back
            self.end_headers()
            self.close_connection = True  # the body ends when the connection closes (HTTP/1.0)
            stop = threading.Event()
            start = time.monotonic()
            pieces = app.generator.stream(prompt, decoding, stop)
            result: Output | None = None
            try:
                if decoding.num_beams > 1:
                    notices = [*notices, f"beam search (num_beams={decoding.num_beams}) cannot stream: the answer "
                                         "appears when it is complete; set beams to 1 to stream"]
                if notices:
                    self._event("notice", {"text": " · ".join(notices)})
                for piece in pieces:
                    if isinstance(piece, Output):
                        result = piece
                        self._event("done", {"finish": piece.finish, "new_tokens": piece.new_tokens,
                                             "seconds": round(time.monotonic() - start, 3)})
                    else:
                        self._event("token", {"text": piece})
            except (BrokenPipeError, ConnectionResetError):
                # The page went away or pressed Stop: the generation ends at the next token; what it
                # still yields is read so that the model is free for the next request.
                stop.set()
                result = next((p for p in pieces if isinstance(p, Output)), result)
            except Exception as exc:  # the page shows it; the server keeps serving
                stop.set()
                try:
                    self._event("error", {"error": f"{type(exc).__name__}: {exc}"})
                except OSError:
                    pass
            if result is not None:
                app.finished.append(result)
                sys.stderr.write(f"generated {result.new_tokens} tokens in {time.monotonic() - start:.2f} s "
                                 f"(finish: {result.finish})\n")

    Handler.app = app  # type: ignore[attr-defined]
    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a full traceback for anything a handler lets through; one line says enough
        # (the server keeps serving either way).
        exc = sys.exc_info()[1]
        sys.stderr.write(f"{client_address[0]} request failed: {type(exc).__name__}: {exc}\n")


def make_server(app: App, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    return Server((host, port), make_handler(app))


def main(argv: Sequence[str] | None = None) -> int:
    p = Parser(prog="train.web", description="A web page to try a model (streamed answers).")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: use an SSH tunnel)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 picks a free one)")
    args = p.parse_args(argv)
    return run("train.web", lambda: serve(args, decoding_from_args(args), generator_from_args(args)))


def serve(args: Any, defaults: Decoding, generator: Generator) -> int:
    """Serve the page until Ctrl-C."""
    info = {"base": str(args.base), "lora": str(args.lora) if args.lora else None}
    server = make_server(App(generator, defaults, info), args.host, args.port)
    host, port = server.server_address[:2]
    # Tests and scripts read this line to find the port.
    print(f"serving on http://{host}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
