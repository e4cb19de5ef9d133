// mmgen's chat page. One conversation is a chain of response ids kept by the server: each turn posts
// {message, image?, previous_response_id} to /api/chat and reads server-sent events — the words so far,
// a preview per row of the picture (it forms top to bottom), then the reply with its new id.
// Undo is going back to the previous id (the server never changes a stored conversation).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  current: localStorage.getItem("mmgen.current") || null,   // the response id the next message continues
  exchanges: [],            // [{id, previous, nodes: [user bubble, reply bubble]}]
  attachment: null,         // data URL of a picture to send with the next message
  controller: null,         // AbortController of the turn in flight
  maxChars: 4000,           // the server's limit on a message (from /api/config)
  tooLong: false,           // the message in the box is over it
};

function headers(extra = {}) {
  const key = localStorage.getItem("mmgen.key");
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

function setStatus(text, isError = false) {
  $("status").textContent = text || "";
  $("status").classList.toggle("error", isError);
}

function remember(id) {
  state.current = id;
  if (id) localStorage.setItem("mmgen.current", id); else localStorage.removeItem("mmgen.current");
  $("undo").disabled = state.exchanges.length === 0 || state.controller !== null;
}

async function errorText(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    message = body.error?.message || message;
  } catch { /* not JSON: the status line says it */ }
  if (response.status === 401) {          // the server was started with --api-key: ask for it
    $("keybar").hidden = false;
    $("key").focus();
    message = `This server needs its API key: enter it above, then send again. (${message})`;
  }
  return message;
}

// --- bubbles ------------------------------------------------------------------------------------
function bubble(role) {
  const el = document.createElement("div");
  el.className = `msg ${role}`;
  const words = document.createElement("div");
  words.className = "words";
  el.append(words);
  $("empty").hidden = true;
  $("log").append(el);
  return el;
}

function addPicture(el, b64) {
  let fig = el.querySelector("figure");
  if (!fig) {
    fig = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "picture";
    img.alt = "picture";
    img.width = 128; img.height = 128;
    fig.append(img);
    el.append(fig);
  }
  fig.querySelector("img").src = b64.startsWith("data:") ? b64 : `data:image/png;base64,${b64}`;
  return fig;
}

function caption(fig, b64, imageId, seed) {
  const cap = document.createElement("figcaption");
  const link = document.createElement("a");
  link.href = `data:image/png;base64,${b64}`;
  link.download = `mmgen-${imageId || "picture"}.png`;
  link.textContent = "Download";
  link.title = "PNG with provenance metadata (made by mmgen, prompt, seed)";
  cap.append(link);
  if (seed !== null && seed !== undefined) {
    const s = document.createElement("span");
    s.textContent = `seed ${seed}`;
    cap.append(s);
  }
  fig.append(cap);
}

function addNote(el, text) {               // words of the message the model was never taught
  if (!text) return;
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = text;
  el.append(note);
}

function scrollDown() { $("log").scrollTop = $("log").scrollHeight; }

function atBottom() {
  const log = $("log");
  return log.scrollHeight - log.scrollTop - log.clientHeight < 4;
}

// --- the message box: grows with its text (and shrinks back), says when the text is over the limit -------
// The box has no maxlength: the browser would cut a longer paste silently. The text stays as pasted,
// the status line says how much is over, and send() refuses it until it fits.
function fitPrompt() {
  const box = $("prompt");
  const pinned = atBottom();             // a taller footer must not hide the end of the conversation
  box.style.height = "auto";
  if (box.value) box.style.height = `${box.scrollHeight}px`;
  else box.style.height = "";             // empty: back to its one row
  if (pinned) scrollDown();
}

function checkLength() {
  const n = [...$("prompt").value.trim()].length;    // characters as the server counts them (code points)
  const over = n > state.maxChars;
  $("prompt").classList.toggle("over", over);
  $("prompt").setAttribute("aria-invalid", String(over));
  if (over) {
    setStatus(`The message is ${n.toLocaleString("en")} characters; the limit is ` +
              `${state.maxChars.toLocaleString("en")}. Shorten it by ${(n - state.maxChars).toLocaleString("en")} to send it.`, true);
  } else if (state.tooLong) {
    setStatus("");
  }
  state.tooLong = over;
  return !over;
}

// --- server-sent events over fetch (EventSource cannot POST) ---------------------------------------
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

// --- a turn -------------------------------------------------------------------------------------
async function send() {
  const message = $("prompt").value.trim();
  if ((!message && !state.attachment) || state.controller) return;
  if (!checkLength()) { $("prompt").focus(); return; }
  const body = {
    message,
    image: state.attachment,
    previous_response_id: state.current,
    picture: $("picture").value,
    background: $("transparent").checked ? "transparent" : "opaque",
  };
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number(seed);

  const user = bubble("user");
  user.querySelector(".words").textContent = message;
  if (state.attachment) addPicture(user, state.attachment);
  const reply = bubble("assistant");
  const words = reply.querySelector(".words");
  const progress = document.createElement("progress");
  progress.max = 16; progress.value = 0;
  $("prompt").value = "";
  fitPrompt();
  clearAttachment();
  scrollDown();

  state.controller = new AbortController();
  $("send").hidden = true; $("stop").hidden = false; $("undo").disabled = true;
  setStatus("thinking…");
  let finished = false;
  try {
    const response = await fetch("/api/chat", {
      method: "POST", body: JSON.stringify(body), signal: state.controller.signal,
      headers: headers({ "Content-Type": "application/json" }),
    });
    if (!response.ok) throw new Error(await errorText(response));
    for await (const event of readEvents(response)) {
      if (event.type === "text") {
        words.textContent = event.text;
      } else if (event.type === "preview") {
        const fig = addPicture(reply, event.image);
        if (!progress.isConnected) fig.append(progress);
        progress.value = event.rows;
        setStatus(`drawing… row ${event.rows} of ${event.of}`);
      } else if (event.type === "done") {
        words.textContent = event.text;
        progress.remove();
        if (event.image) {
          const fig = addPicture(reply, event.image);
          fig.querySelector("img").dataset.final = "true";
          caption(fig, event.image, event.image_id, event.seed);
        }
        addNote(reply, event.note);
        reply.dataset.responseId = event.id;
        state.exchanges.push({ id: event.id, previous: event.previous_response_id, nodes: [user, reply] });
        finished = true;
        remember(event.id);
        setStatus(`${event.usage.input_tokens} tokens in, ${event.usage.output_tokens} out`);
      } else if (event.type === "error") {
        throw new Error(event.error.message);
      }
      scrollDown();
    }
    if (!finished) throw new Error("the reply ended early");
  } catch (err) {
    if (err.name === "AbortError") {
      user.remove(); reply.remove();          // stopped: the conversation is as it was
      setStatus("stopped");
    } else {
      reply.classList.add("error");
      words.textContent = err.message;
      progress.remove();
      reply.querySelector("figure")?.remove();
      setStatus(err.message, true);
      scrollDown();                            // the message made the bubble taller: keep it in view
    }
  } finally {
    state.controller = null;
    $("send").hidden = false; $("stop").hidden = true;
    $("undo").disabled = state.exchanges.length === 0;
    $("prompt").focus();
  }
}

function undo() {
  const last = state.exchanges.pop();
  if (!last) return;
  // error bubbles after the last good exchange go too
  let el = last.nodes[1].nextSibling;
  while (el) { const next = el.nextSibling; el.remove(); el = next; }
  last.nodes.forEach((n) => n.remove());
  remember(last.previous || null);
  if (!state.exchanges.length && !$("log").querySelector(".msg")) $("empty").hidden = false;
  setStatus("undone");
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.exchanges = [];
  $("log").querySelectorAll(".msg").forEach((n) => n.remove());
  $("empty").hidden = false;
  remember(null);
  setStatus("");
}

// --- attachments ---------------------------------------------------------------------------------
function attach(file) {
  if (!file || !file.type.startsWith("image/")) { setStatus("attach a PNG, JPEG or WEBP picture", true); return; }
  const reader = new FileReader();
  reader.onload = () => {
    state.attachment = reader.result;
    $("attachment-img").src = reader.result;
    $("attachment").hidden = false;
  };
  reader.readAsDataURL(file);
}

function clearAttachment() {
  state.attachment = null;
  $("attachment").hidden = true;
  $("file").value = "";
}

// --- restore a conversation after a reload --------------------------------------------------------
async function restore() {
  if (!state.current) return;
  const response = await fetch(`/api/session/${encodeURIComponent(state.current)}`, { headers: headers() });
  if (response.status === 401) { setStatus(await errorText(response), true); return; }   // kept for when the key comes
  if (!response.ok) { remember(null); return; }
  const session = await response.json();
  const chain = session.chain;                 // [{id, previous}], oldest stored … current
  const pairs = [];
  let user = null;
  for (const turn of session.turns) {
    const el = bubble(turn.role);
    el.querySelector(".words").textContent = turn.text;
    if (turn.image) {
      const fig = addPicture(el, turn.image);
      if (turn.role === "assistant") caption(fig, turn.image, turn.id, turn.seed);
    }
    addNote(el, turn.note);
    if (turn.role === "user") user = el; else { pairs.push([user, el]); user = null; }
  }
  // the last len(chain) exchanges are still stored: each can be undone, back to its previous id
  const offset = pairs.length - chain.length;
  pairs.forEach((nodes, i) => {
    if (i >= offset) state.exchanges.push({ id: chain[i - offset].id, previous: chain[i - offset].previous, nodes });
  });
  remember(state.current);
  scrollDown();
}

// --- wiring ----------------------------------------------------------------------------------------
async function init() {
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  $("prompt").addEventListener("input", () => { fitPrompt(); checkLength(); });
  $("prompt").addEventListener("paste", (e) => {
    const file = [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) { e.preventDefault(); attach(file); }
  });
  $("file").addEventListener("change", () => attach($("file").files[0]));
  $("attachment-remove").addEventListener("click", clearAttachment);
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("undo").addEventListener("click", undo);
  $("new").addEventListener("click", newChat);
  $("key").value = localStorage.getItem("mmgen.key") || "";
  $("key").addEventListener("change", () => {
    localStorage.setItem("mmgen.key", $("key").value.trim());
    setStatus("");
    if (!$("log").querySelector(".msg")) restore();       // the conversation a missing key kept from showing
  });
  try {
    const config = await (await fetch("/api/config")).json();
    $("model").textContent = config.model;
    $("keybar").hidden = !config.auth;
    state.maxChars = config.max_prompt_chars;
    await restore();
  } catch (err) {
    setStatus(`cannot reach the server: ${err.message}`, true);
  }
  document.body.dataset.ready = "true";
  $("prompt").focus();
}

init();
