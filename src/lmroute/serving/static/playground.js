// The Playground: a prompt (or a conversation) scored by every router the server lists, then sent.

import { el, ms, number, replace, table } from "./dom.js";

const $ = (id) => document.getElementById(id);
// Fields of /v1/route's answer shown in their own columns; any other (N-model qualities, costs...)
// is shown in "details", so a server that answers more needs no change here.
const ROUTE_FIELDS = ["router", "threshold", "score", "decision", "model", "routed_model"];

// A message's text as the server reads it: the string, or the text of its parts (OpenAI's
// [{"type": "text", "text": ...}, {"type": "image_url", ...}] form).
function messageText(message) {
  if (typeof message.content === "string") return message.content;
  if (!Array.isArray(message.content)) return "";
  return message.content.filter((p) => p && p.type === "text" && typeof p.text === "string")
    .map((p) => p.text).join("\n");
}

// One request per button at a time: a double click would send (and pay) twice, and a slow first
// answer could land after the second.
async function whileDisabled(button, work) {
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

// A model or router name from an x-lmroute-* header, where it is percent-encoded beyond printable
// ASCII (a header holds no "千问").
function headerName(headers, name) {
  const value = headers.get(name);
  return value === null ? null : decodeURIComponent(value);
}

function kilobytes(text) {
  return new TextEncoder().encode(text).length / 1024;
}

export class Playground {
  constructor(api) {
    this.api = api;
    this.routerModels = [];
    $("score-button").addEventListener("click", () => whileDisabled($("score-button"), () => this.score()));
    $("send-button").addEventListener("click", () => whileDisabled($("send-button"), () => this.send()));
    $("prompt").addEventListener("input", () => this.showSize());
    $("send-model-name").addEventListener("input", () => {
      $("send-model").disabled = Boolean(this.typedModel());
    });
    for (const radio of document.querySelectorAll("input[name=input-kind]")) {
      radio.addEventListener("change", () => this.changeKind());
    }
  }

  async refresh() {
    try {
      const models = (await this.api.request("v1/models")).data.data;
      this.routerModels = models.filter((m) => m.owned_by === "lmroute").map((m) => m.id);
      const select = $("send-model");
      const chosen = select.value;
      replace(select, ...models.map((m) => el("option", { value: m.id },
        m.owned_by === "lmroute" ? m.id : `${m.id} (${m.owned_by.replace("upstream:", "")}, no routing)`)));
      if (models.some((m) => m.id === chosen)) select.value = chosen;
    } catch (err) {
      if (err.status !== 401) this.message(`Could not list the models: ${err.message}`);
    }
  }

  // A model name typed by hand: one the server accepts but does not list, such as the N-model
  // policies (router-mf-lambda-0.02, router-mf-quality-0.6) of a server with `models:`.
  typedModel() {
    return $("send-model-name").value.trim();
  }

  message(text) {
    $("playground-message").textContent = text || "";
  }

  showSize() {
    const kb = kilobytes($("prompt").value);
    $("prompt-size").textContent = kb >= 1 ? `${kb.toFixed(0)} KB` : "";
  }

  changeKind() {
    const prompt = $("prompt");
    if (this.kind() === "conversation" && !prompt.value.trim()) {
      prompt.value = JSON.stringify([{ role: "user", content: "" }], null, 1);
    }
    prompt.placeholder = this.kind() === "conversation"
      ? '[{"role": "system", "content": "..."}, {"role": "user", "content": "..."}]'
      : "Type or paste a prompt";
  }

  kind() {
    return document.querySelector("input[name=input-kind]:checked").value;
  }

  // {prompt} or {messages}, or null after showing what is wrong.
  input() {
    const text = $("prompt").value;
    if (this.kind() === "prompt") {
      if (!text.trim()) {
        this.message("The prompt is empty: type or paste one first.");
        return null;
      }
      return { prompt: text };
    }
    let messages;
    try {
      messages = JSON.parse(text);
    } catch (err) {
      this.message(`The conversation is not JSON (${err.message}): give a list of {"role", "content"} messages.`);
      return null;
    }
    const valid = Array.isArray(messages) && messages.length > 0
      && messages.every((m) => m && typeof m === "object" && typeof m.role === "string");
    if (!valid) {
      this.message('The conversation must be a non-empty JSON list of {"role": ..., "content": ...} messages.');
      return null;
    }
    if (!messages.some((m) => m.role === "user" && messageText(m).trim())) {
      this.message("The conversation has no user message with text: add one.");
      return null;
    }
    return { messages };
  }

  async score() {
    this.message("");
    const input = this.input();
    if (!input) return;
    if (!this.routerModels.length) await this.refresh();
    const typed = this.typedModel();
    const models = typed.startsWith("router-") && !this.routerModels.includes(typed)
      ? [...this.routerModels, typed] : this.routerModels;
    if (!models.length) {
      this.message("The server lists no router to score with.");
      return;
    }
    replace($("scores"), el("p", { class: "muted" }, "Scoring..."));
    const results = await Promise.all(models.map(async (model) => {
      try {
        return { model, answer: (await this.api.post("v1/route", { model, ...input })).data };
      } catch (err) {
        return { model, error: err.message };
      }
    }));
    const rows = results.map(({ model, answer, error }) => {
      if (error) return [model, { text: error, class: "error", testid: `score-error:${model}` }, "", "", "", ""];
      // Unset fields (null: no target mode, no conversation) say nothing.
      const extra = Object.fromEntries(
        Object.entries(answer).filter(([k, v]) => !ROUTE_FIELDS.includes(k) && v !== null));
      const score = typeof answer.score === "number" ? answer.score : null;
      return [model, answer.router ?? "", String(answer.threshold ?? ""),
        { text: score === null ? "n/a" : score.toFixed(6), value: score ?? undefined, testid: `score:${model}` },
        // Among N models the decision is the chosen model itself, also named routed_model.
        { text: `${answer.decision ?? "?"} → ${answer.model ?? answer.routed_model ?? "?"}`, value: answer.decision,
          testid: `decision:${model}` },
        Object.keys(extra).length ? JSON.stringify(extra) : ""];
    });
    replace($("scores"), table(["model name", "router", "threshold", "score", "decision", "details"], rows,
      { testid: "scores" }));
    const failed = results.find((r) => r.error);
    if (failed) this.message(`Scoring failed: ${failed.error}`);
  }

  async send() {
    this.message("");
    const input = this.input();
    if (!input) return;
    const model = this.typedModel() || $("send-model").value;
    if (!model) {
      this.message("No model to send to: the server lists none.");
      return;
    }
    const messages = input.messages || [{ role: "user", content: input.prompt }];
    replace($("answer"), el("p", { class: "muted" }, `Asking ${model}...`));
    let result;
    try {
      result = await this.api.post("v1/chat/completions", { model, messages });
    } catch (err) {
      replace($("answer"));
      this.message(`The request failed: ${err.message}`);
      return;
    }
    const body = result.data || {};
    const choice = (body.choices || [])[0] || {};
    const content = choice.message && typeof choice.message.content === "string" ? choice.message.content : "";
    const routing = /routing;dur=([\d.]+)/.exec(result.headers.get("server-timing") || "");
    const score = result.headers.get("x-lmroute-score");
    const facts = [
      ["answered by", headerName(result.headers, "x-lmroute-model") || body.model || "?", "answered-by"],
      ["decision", headerName(result.headers, "x-lmroute-decision") || "?", "answer-decision"],
      ["router score", score === null ? "none (model asked by name)" : number(Number(score), 6), "answer-score"],
      ["fallback", result.headers.get("x-lmroute-fallback") === "true" ? "yes: the routed model failed" : "no",
        "answer-fallback"],
      ["added latency (routing)", routing ? `${Number(routing[1]).toFixed(2)} ms` : "n/a", "answer-routing"],
      ["round trip", ms(result.ms / 1000), "answer-total"],
    ];
    replace($("answer"),
      el("pre", { class: "answer", "data-testid": "answer-text" }, content || "(no text in the answer)"),
      el("dl", {}, ...facts.flatMap(([k, v, id]) => [el("dt", {}, k), el("dd", { "data-testid": id }, v)])));
  }
}
