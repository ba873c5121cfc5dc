// The page: fills the decoding defaults from /api/info, posts a request to /api/generate and
// appends the streamed Server-Sent Events ("token", "notice", "done", "error") to the answer.
// In chat mode the page keeps the conversation and sends all of it with each message; the server
// formats it with the chat template.
"use strict";

const $ = (id) => document.getElementById(id);
const FIELDS = { num_beams: "int", max_new_tokens: "int", repetition_penalty: "float",
                 temperature: "float", top_p: "float", top_k: "int" };
let controller = null;
let history = [];    // chat mode: the conversation so far, [{role, content}]
let pending = null;  // chat mode: the messages of the request in flight

function setMode(mode) {
  const chat = mode === "chat";
  $("instruction-label").textContent = chat ? "Message" : mode === "continuation" ? "Prompt" : "Instruction";
  $("input-block").hidden = mode !== "instruction";
  $("chat-block").hidden = !chat;
  $("submit").textContent = chat ? "Send" : "Generate";
}

function showHistory() {
  const list = $("history");
  list.textContent = "";
  for (const m of history) {
    const item = document.createElement("li");
    item.className = m.role;
    item.dataset.role = m.role;
    item.textContent = m.content;
    list.appendChild(item);
  }
  $("history-empty").hidden = history.length > 0;
}

async function loadInfo() {
  const info = await (await fetch("/api/info")).json();
  for (const [key, kind] of Object.entries(FIELDS)) $(key).value = info.defaults[key];
  $("do_sample").checked = info.defaults.do_sample;
  $("mode").value = info.mode;
  setMode(info.mode);
  $("model").textContent = `base ${info.base || "?"}` + (info.lora ? ` · LoRA ${info.lora}` : "");
}

function decoding() {
  const out = { do_sample: $("do_sample").checked };
  for (const [key, kind] of Object.entries(FIELDS)) {
    const v = $(key).value;
    out[key] = kind === "int" ? parseInt(v, 10) : parseFloat(v);
  }
  return out;
}

function finish(message, state) {
  if (pending) {
    // An answer (or the part of it before Stop) joins the conversation; an error leaves it as it was.
    const answer = $("answer").textContent;
    if (state === "done" && answer) {
      history = [...pending, { role: "assistant", content: answer }];
      $("instruction").value = "";
      showHistory();
    }
    pending = null;
  }
  $("status").textContent = message;
  $("answer").dataset.state = state;
  $("submit").disabled = false;
  $("stop").disabled = true;
  controller = null;
}

function handle(event, data) {
  if (event === "token") $("answer").textContent += data.text;
  else if (event === "notice") { $("notice").textContent = data.text; $("notice").hidden = false; }
  else if (event === "done") {
    $("answer").dataset.finish = data.finish;
    const why = { eos: "ended with EOS", length: "cut at max new tokens", stopped: "stopped" }[data.finish];
    finish(`${why} · ${data.new_tokens} tokens · ${data.seconds.toFixed(2)} s`, "done");
  } else if (event === "error") finish(`error: ${data.error}`, "error");
}

async function generate(ev) {
  ev.preventDefault();
  $("answer").textContent = "";
  delete $("answer").dataset.finish;
  $("answer").dataset.state = "running";
  $("notice").hidden = true;
  $("status").textContent = "generating…";
  $("submit").disabled = true;
  $("stop").disabled = false;
  controller = new AbortController();
  const mode = $("mode").value;
  let body;
  if (mode === "chat") {
    pending = [...history, { role: "user", content: $("instruction").value }];
    body = { mode, messages: pending, decoding: decoding() };
  } else {
    body = { mode, instruction: $("instruction").value, input: $("input").value, decoding: decoding() };
  }
  let response;
  try {
    response = await fetch("/api/generate", { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" }, signal: controller.signal });
  } catch (err) { finish(`error: ${err}`, "error"); return; }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (_) { /* not JSON */ }
    finish(`error: ${message}`, "error");
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (data) handle(event, JSON.parse(data));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") { finish(`error: ${err}`, "error"); return; }
  }
  if (controller) finish($("answer").dataset.finish ? $("status").textContent : "stopped", "done");
}

$("form").addEventListener("submit", generate);
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("mode").addEventListener("change", (e) => setMode(e.target.value));
$("new-chat").addEventListener("click", () => { history = []; showHistory(); });
loadInfo().then(() => { document.body.dataset.ready = "1"; })
          .catch((err) => { $("model").textContent = `cannot reach the server: ${err}`; });
