"""train.web: the HTTP API (bad requests refused, answers streamed as Server-Sent Events) and the
page itself in real headless Chromium against a tiny model on localhost.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages
separated by NUL on file descriptors 3 and 4): no websocket library, no browser download. Debian's
``chromium`` package provides the browser; the ``chromium`` fixture installs it with apt-get when it
is missing and the test runs as root, and fails (never skips) otherwise. Set ``CAMA_WEB_SCREENSHOT``
to a PNG path to save the page after the answer arrived (docs/web.png was made that way).
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gen_helpers import make_adapter, make_base
from train.generate import Decoding, Generator, load_model
from train.web import App, main, make_server

PROMPT_INSTRUCTION = "用一句话介绍杭州。"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tokenizer_path):
    tmp = tmp_path_factory.mktemp("web")
    base = make_base(tmp / "cama-tiny", tokenizer_path)
    adapter = make_adapter(tmp / "cama-tiny-lora", base)
    model, tok = load_model(base, adapter)
    generator = Generator(model, tok, default_mode="instruction")
    defaults = Decoding(num_beams=1, max_new_tokens=24)
    srv = make_server(App(generator, defaults, {"base": "cama-tiny", "lora": "cama-tiny-lora"}), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.generator = generator  # for the tests' expected answers
    srv.base = base
    yield srv
    srv.shutdown()
    srv.server_close()


def request(srv, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=60)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
    resp = conn.getresponse()
    return resp, resp.read()


def events(payload: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in payload.decode("utf-8").split("\n\n"):
        if block.strip():
            lines = dict(line.split(": ", 1) for line in block.split("\n"))
            out.append((lines["event"], json.loads(lines["data"])))
    return out


# ---------------------------------------------------------------------------------------------
# HTTP API


def test_static_files_and_info(server):
    resp, body = request(server, "GET", "/")
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert b'id="instruction"' in body and b'src="/app.js"' in body
    for path in ("/app.js", "/style.css"):
        assert request(server, "GET", path)[0].status == 200
    resp, body = request(server, "GET", "/api/info")
    info = json.loads(body)
    assert info["mode"] == "instruction" and info["defaults"]["num_beams"] == 1
    assert info["defaults"]["max_new_tokens"] == 24 and info["lora"] == "cama-tiny-lora"
    for path in ("/../pyproject.toml", "/train/web.py", "/web/app.js"):
        assert request(server, "GET", path)[0].status == 404


@pytest.mark.parametrize("body,message", [
    (b"{not json", "the request body is not JSON"),
    (b"[1]", "the request body must be a JSON object"),
    (json.dumps({"instruction": ""}).encode(), "the instruction (or prompt) is empty"),
    (json.dumps({"instruction": "x", "decoding": {"temperature": 0}}).encode(), "temperature must be > 0, got 0.0"),
    (json.dumps({"instruction": "x", "decoding": {"top_p": 2}}).encode(), "top_p must be in (0, 1], got 2.0"),
    (json.dumps({"instruction": "x", "decoding": {"num_beams": 0}}).encode(), "num_beams must be ≥ 1, got 0"),
    (json.dumps({"instruction": "x", "decoding": {"max_new_tokens": "9"}}).encode(), "max_new_tokens must be an integer"),
    (json.dumps({"instruction": "x", "mode": "dialog"}).encode(), "mode must be instruction, continuation or chat"),
    (json.dumps({"mode": "chat"}).encode(), "chat mode needs 'messages'"),
    (json.dumps({"mode": "chat", "instruction": "x", "messages": [{"role": "user", "content": "q"}]}).encode(),
     "chat mode takes 'messages', not 'instruction' or 'input'"),
    (json.dumps({"mode": "chat", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
     .encode(), "messages: the conversation must end with the user's message (message 1)"),
    (json.dumps({"mode": "chat", "messages": [{"role": "robot", "content": "q"}]}).encode(),
     "messages: unknown role 'robot' (message 0)"),
    (json.dumps({"mode": "chat", "messages": {"role": "user"}}).encode(), "messages: the messages are not a list"),
    (json.dumps({"instruction": "x", "messages": []}).encode(), "'messages' goes with mode chat, not instruction"),
    (json.dumps({"instruction": "x", "temperature": 1}).encode(), "unknown field 'temperature'"),
])
def test_bad_requests_get_400(server, body, message):
    resp, payload = request(server, "POST", "/api/generate", raw=body)
    assert resp.status == 400
    assert message in json.loads(payload)["error"]


def test_answer_is_streamed(server):
    d = Decoding(num_beams=1, max_new_tokens=10)
    resp, payload = request(server, "POST", "/api/generate",
                            {"instruction": PROMPT_INSTRUCTION, "input": "", "decoding": {"num_beams": 1, "max_new_tokens": 10}})
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/event-stream")
    ev = events(payload)
    tokens = [data["text"] for name, data in ev if name == "token"]
    assert len(tokens) > 1  # piece by piece, not one block
    assert ev[-1][0] == "done" and ev[-1][1]["finish"] == "length" and ev[-1][1]["new_tokens"] == 10
    g = server.generator
    assert "".join(tokens) == g.generate([g.prompt(PROMPT_INSTRUCTION)], d)[0].text


def test_chat_requests_carry_the_history(server):
    """Chat mode: the server formats the page's whole conversation with the chat template."""
    g, app = server.generator, server.RequestHandlerClass.app
    d = {"num_beams": 1, "max_new_tokens": 6}

    def say(messages):
        resp, payload = request(server, "POST", "/api/generate", {"mode": "chat", "messages": messages, "decoding": d})
        assert resp.status == 200
        ev = events(payload)
        assert ev[-1][0] == "done" and ev[-1][1]["new_tokens"] == 6
        return "".join(data["text"] for name, data in ev if name == "token")

    first = [{"role": "user", "content": PROMPT_INSTRUCTION}]
    a1 = say(first)
    assert app.prompts[-1] == g.chat_prompt(first)[0] and a1 == g.generate([app.prompts[-1]], Decoding(**d))[0].text
    second = [*first, {"role": "assistant", "content": a1}, {"role": "user", "content": "And in English?"}]
    a2 = say(second)
    assert app.prompts[-1] == g.chat_prompt(second)[0]
    assert app.prompts[-1].startswith(app.prompts[-2] + a1 + "</s>")
    assert a2 == g.generate([app.prompts[-1]], Decoding(**d))[0].text


def test_beam_search_sends_a_notice_and_one_piece(server):
    resp, payload = request(server, "POST", "/api/generate",
                            {"mode": "continuation", "instruction": "杭州是", "decoding": {"num_beams": 2, "max_new_tokens": 5}})
    names = [name for name, _ in events(payload)]
    assert names[0] == "notice" and names[1:] == ["token", "done"]
    assert "cannot stream" in events(payload)[0][1]["text"]


def test_a_client_that_goes_away_stops_the_generation(server):
    import socket

    body = json.dumps({"mode": "continuation", "instruction": "杭州是",
                       "decoding": {"num_beams": 1, "max_new_tokens": 900}}).encode()
    with socket.create_connection(server.server_address[:2], timeout=60) as sock:
        sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while b"event: token" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    end = time.monotonic() + 60
    app = server.RequestHandlerClass.app
    while time.monotonic() < end and not (app.finished and app.finished[-1].finish == "stopped"):
        time.sleep(0.05)
    assert app.finished[-1].finish == "stopped" and app.finished[-1].new_tokens < 900
    # The model is free again.
    resp, payload = request(server, "POST", "/api/generate", {"instruction": "x", "decoding": {"max_new_tokens": 2}})
    assert events(payload)[-1][1]["new_tokens"] == 2


@pytest.mark.slow
def test_command_line_server(server, tmp_path, capsys):
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "train.web", "--base", str(server.base), "--port", "0",
                             "--num-beams", "1", "--max-new-tokens", "3"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].strip("/\n"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/info")
        info = json.loads(conn.getresponse().read())
        assert info["mode"] == "continuation" and info["lora"] is None  # no adapter: the pretrained model
        assert info["defaults"]["max_new_tokens"] == 3
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/generate", body=json.dumps({"instruction": "杭州是"}))
        assert events(conn.getresponse().read())[-1] == ("done", {"finish": "length", "new_tokens": 3,
                                                                  "seconds": pytest.approx(0, abs=30)})
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert main(["--base", str(tmp_path), "--port", "0"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["--base", str(server.base), "--top-k", "-1"]) == 2
    assert "top_k must be ≥ 0 (0 turns top-k off), got -1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The page in headless Chromium


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900)
            subprocess.run(install, env=env, capture_output=True, timeout=900)
        path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium package is needed for the page test: apt-get install chromium")
    return path


class Chrome:
    """A headless Chromium and one page, spoken to over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: the pipe ends at 3 (commands in) and 4 (replies out)
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "--window-size=900,1100", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buf:
                if time.monotonic() > end:
                    raise TimeoutError(f"no reply to {method}")
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def page(self, method: str, **params):
        return self.call(method, session=self.session, **params)

    def js(self, expression: str):
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"the page never satisfied {expression}")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


@pytest.mark.slow
def test_page_in_headless_chromium(server, chromium, tmp_path):
    """Open the page, type an instruction and an input, submit, see the streamed answer appear."""
    host, port = server.server_address[:2]
    browser = Chrome(chromium, tmp_path / "profile")
    try:
        browser.page("Page.enable")
        browser.page("Page.navigate", url=f"http://{host}:{port}/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        # The decoding controls show the server's defaults.
        assert browser.js("document.getElementById('num_beams').value") == "1"
        assert browser.js("document.getElementById('max_new_tokens').value") == "24"
        browser.js(f"""
            document.getElementById('instruction').value = {json.dumps(PROMPT_INSTRUCTION)};
            document.getElementById('input').value = '';
            document.getElementById('max_new_tokens').value = '16';
            document.getElementById('submit').click();
        """)
        state = browser.wait_for("""(() => { const a = document.getElementById('answer');
            return a.dataset.state === 'done' && {finish: a.dataset.finish, text: a.textContent,
                status: document.getElementById('status').textContent}; })()""")
        g = server.generator
        expected = g.generate([g.prompt(PROMPT_INSTRUCTION)], Decoding(num_beams=1, max_new_tokens=16))[0]
        assert state["finish"] == "length" and state["text"] == expected.text and expected.text.strip()
        assert state["status"].startswith("cut at max new tokens · 16 tokens")
        shot = os.environ.get("CAMA_WEB_SCREENSHOT")
        if shot:
            height = browser.js("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)")
            clip = {"x": 0, "y": 0, "width": 900, "height": height, "scale": 1}
            png = base64.b64decode(browser.page("Page.captureScreenshot", format="png", clip=clip)["data"])
            Path(shot).write_bytes(png)
        # A value out of range: the server's message is shown, nothing generated.
        browser.js("""document.getElementById('temperature').value = '0';
                      document.getElementById('submit').click();""")
        status = browser.wait_for("""document.getElementById('answer').dataset.state === 'error'
                                     && document.getElementById('status').textContent""")
        assert status == "error: temperature must be > 0, got 0.0"
        assert browser.js("document.getElementById('answer').textContent") == ""
    finally:
        browser.close()


@pytest.mark.slow
def test_a_two_turn_chat_in_headless_chromium(server, chromium, tmp_path):
    """Chat mode on the page: the second request carries the first message and its answer; the page shows
    the conversation, and a new conversation starts empty."""
    host, port = server.server_address[:2]
    g = server.generator
    browser = Chrome(chromium, tmp_path / "profile")
    try:
        browser.page("Page.enable")
        browser.page("Page.navigate", url=f"http://{host}:{port}/")
        browser.wait_for("document.body && document.body.dataset.ready === '1'")
        # What the page sends, seen from inside the page.
        browser.js("""window.sent = []; const realFetch = window.fetch;
                      window.fetch = (url, options) => {
                        if (options && options.body) window.sent.push(JSON.parse(options.body));
                        return realFetch(url, options); };""")
        browser.js("""const mode = document.getElementById('mode'); mode.value = 'chat';
                      mode.dispatchEvent(new Event('change'));""")
        assert browser.js("document.getElementById('chat-block').hidden") is False
        assert browser.js("document.getElementById('input-block').hidden") is True
        assert browser.js("document.getElementById('instruction-label').textContent") == "Message"
        assert browser.js("document.getElementById('submit').textContent") == "Send"
        answers = []
        for k, message in enumerate([PROMPT_INSTRUCTION, "And in English?"]):
            browser.js(f"""document.getElementById('instruction').value = {json.dumps(message)};
                           document.getElementById('max_new_tokens').value = '8';
                           document.getElementById('submit').click();""")
            browser.wait_for(f"document.querySelectorAll('#history li').length === {2 * k + 2}")
            answers.append(browser.js("document.getElementById('answer').textContent"))
        sent = browser.js("window.sent")
        user1 = {"role": "user", "content": PROMPT_INSTRUCTION}
        history = [user1, {"role": "assistant", "content": answers[0]}, {"role": "user", "content": "And in English?"}]
        assert [s["mode"] for s in sent] == ["chat", "chat"] and "instruction" not in sent[1]
        assert sent[0]["messages"] == [user1] and sent[1]["messages"] == history
        d = Decoding(num_beams=1, max_new_tokens=8)
        assert answers == [g.generate([g.chat_prompt(m)[0]], d)[0].text for m in ([user1], history)]
        shown = browser.js("[...document.querySelectorAll('#history li')].map(li => [li.dataset.role, li.textContent])")
        assert shown == [[m["role"], m["content"]] for m in history] + [["assistant", answers[1]]]
        assert browser.js("document.getElementById('instruction').value") == ""  # ready for the next message
        browser.js("document.getElementById('new-chat').click();")
        assert browser.js("document.querySelectorAll('#history li').length") == 0
        browser.js("""document.getElementById('instruction').value = 'Hi';
                      document.getElementById('submit').click();""")
        browser.wait_for("document.querySelectorAll('#history li').length === 2")
        assert browser.js("window.sent")[-1]["messages"] == [{"role": "user", "content": "Hi"}]
    finally:
        browser.close()


def test_a_malformed_request_is_one_log_line_not_a_traceback(server, capsys):
    """Each answered 400 (or dropped by its client) and logged as one line; the server keeps serving."""
    import socket

    def send(raw: bytes, hang_up: bool = False) -> bytes:
        with socket.create_connection(server.server_address[:2], timeout=30) as sock:
            sock.sendall(raw)
            answer = b"" if hang_up else sock.recv(64)
        time.sleep(0.3)  # the handler thread writes its line
        return answer

    nested = b"[" * 100_000  # Python's JSON decoder recurses: a RecursionError unless caught
    capsys.readouterr()
    assert send(b"POST /api/generate HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(nested) + nested) \
        .startswith(b"HTTP/1.0 400")
    send(b"POST /api/generate HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", hang_up=True)  # body cut short
    assert send(b"\x16\x03\x01 not http\r\n\r\n")  # http.server's error page (no status line: not HTTP)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 3, err
    assert all('400' in line for line in lines), err
    assert "(code 400, message Bad request" in lines[2]
    assert request(server, "GET", "/api/info")[0].status == 200


def test_a_chat_template_that_refuses_the_conversation_is_a_400(server):
    """A model whose own template raises (Jinja's raise_exception) on a request: one error, not a dead handler."""
    g = server.generator
    saved = g.chat_template
    g.chat_template = "{{ raise_exception('only two roles here') }}"
    try:
        resp, payload = request(server, "POST", "/api/generate",
                                {"mode": "chat", "messages": [{"role": "user", "content": "q"}]})
    finally:
        g.chat_template = saved
    assert resp.status == 400
    assert "only two roles here" in json.loads(payload)["error"]
