// The console's shell: tabs, the API key form, the error banner; each view lives in its own module.

import { Api } from "./api.js";
import { LiveView } from "./live.js";
import { Playground } from "./playground.js";
import { ReportView } from "./report.js";

const api = new Api();
const $ = (id) => document.getElementById(id);

function showBanner(message) {
  const banner = $("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function askForKey(message) {
  $("key-form").hidden = false;
  $("key-message").textContent = message;
  $("key-input").focus();
}

const views = {};
const NAMES = ["live", "playground", "report"];

function select(wanted) {
  const name = NAMES.includes(wanted) ? wanted : "live";
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.dataset.view !== name;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
}

async function refreshAll() {
  await Promise.all(Object.values(views).map((v) => v.refresh?.()));
}

function start() {
  api.onUnauthorized = () =>
    askForKey(api.key ? "The server refused this key: type another." : "Type the key to continue.");
  views.live = new LiveView(api, { showBanner });
  views.playground = new Playground(api);
  views.report = new ReportView();
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    tab.addEventListener("click", () => select(tab.dataset.view));
  }
  $("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      $("key-message").textContent = "The key is empty: type the server's API key.";
      return;
    }
    // fetch refuses such a header outright: kept, the key would fail every call, /metrics too.
    const bad = /[^\t\x20-\x7e\x80-\xff]/u.exec(key);
    if (bad) {
      const code = bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      $("key-message").textContent =
        `The key holds U+${code}, which an HTTP header cannot carry: paste the key without it.`;
      return;
    }
    api.setKey(key);
    $("key-input").value = "";
    $("key-form").hidden = true;
    await refreshAll();
  });
  window.addEventListener("hashchange", () => select(location.hash.slice(1)));
  select(location.hash.slice(1));
  refreshAll();
}

start();
