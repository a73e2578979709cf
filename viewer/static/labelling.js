// The labelling page: keyboard first, and never waiting for the server between two images.
// Images come from the queue ten at a time, leased to this labeller and preloaded; a label is
// sent in the background while the next image is already on screen. Needs viewer.js.
"use strict";

const root = document.getElementById("labelling");
const PROJECT = root.dataset.project;
const BASE = "/api/label/" + encodeURIComponent(PROJECT);
const thumbUrl = (key, size = 320) => "/thumb?" + new URLSearchParams({key, size});
const $ = (id) => document.getElementById(id);
let categories = [];
let buffer = [];  // leased and preloaded, not shown yet
let current = null;
const done = [];  // {item, previous: Promise of the label it replaced}, for undo
let refilling = null;
let gridMode = false;
let lastClicked = null;
window.labelTimings = [];  // ms from a key press to the next image painted (read by the browser test)

function queueKind() {
  return $("queue").value;
}

function claim(n) {  // a POST: the images are leased to this labeller (asking again renews the lease)
  return post(BASE + "/queue?" + new URLSearchParams({kind: queueKind(), n}), {});
}

function refill(n = 10) {
  const asked = Date.now();
  refilling ??= claim(n).then((data) => {
    const until = asked + (data.lease_s - 10) * 1000;  // after that an image may be someone else's
    for (const item of buffer) if (item.until > asked) item.until = until;  // the server renewed these
    for (const item of data.items) {
      item.queue = data.kind;
      item.until = until;
      item.preload = new Image();
      item.preload.src = thumbUrl(item.image_key);
      buffer.push(item);
    }
    return data.items.length;
  }).finally(() => { refilling = null; });
  return refilling;
}

function painted(img, t0) {
  if (t0 === undefined) return;
  img.decode().then(() => requestAnimationFrame(() => window.labelTimings.push(performance.now() - t0)), () => {});
}

let waitingSince;  // a key press that found no image ready: its time runs until one is shown

function show(t0) {
  buffer = buffer.filter((item) => item.until > Date.now());  // a lease that lapsed: not ours any more
  current = buffer.shift() || null;
  const img = $("current");
  $("empty").hidden = Boolean(current) || refilling !== null;
  if (!current && t0 !== undefined) waitingSince = t0;
  if (current) {
    t0 ??= waitingSince;
    waitingSince = undefined;
    img.src = thumbUrl(current.image_key);
    img.alt = current.image_key;
    $("current-key").textContent = current.image_key;
    $("suggestion").textContent = current.suggestion || "–";
    const margin = current.margin === null ? "" : `, margin ${current.margin.toFixed(3)}`;
    $("margin").textContent = `${current.category} ${pct(current.confidence)}${margin}`;
    painted(img, t0);
  } else {
    img.removeAttribute("src");
    $("current-key").textContent = $("suggestion").textContent = $("margin").textContent = "";
  }
  if (buffer.length < 8) {
    refill(16).then((got) => { if (!current && got) show(); else $("empty").hidden = Boolean(current); })
      .catch((err) => problem(err.message));
  }
}

function send(keys, category, how, queue) {
  return post(BASE, {keys, category, how, queue}).then((r) => { refreshProgress(); return r.previous; })
    .catch((err) => { problem("label not saved: " + err.message); throw err; });
}

function label(category, how, t0) {
  if (!current) return;
  const item = current;
  done.push({item, previous: send([item.image_key], category, how, item.queue)});
  $("last").textContent = `${item.image_key} → ${category}`;
  show(t0);
}

function undo(t0) {
  const entry = done.pop();
  if (!entry) return;
  if (current) buffer.unshift(current);
  buffer.unshift(entry.item);
  entry.previous.then((previous) => send([entry.item.image_key], previous[entry.item.image_key] ?? null, "undo"));
  $("last").textContent = `undone: ${entry.item.image_key}`;
  show(t0);
}

// --- grid mode: select many, label them with one key
function selected() {
  return [...document.querySelectorAll("#label-grid .card.selected")];
}

function countSelected() {
  $("selected-count").textContent = selected().length;
}

function gridCard(item) {
  const card = el("div", {class: "card", "data-key": item.image_key, tabindex: "0"},
    el("img", {src: thumbUrl(item.image_key, 160), alt: item.image_key, loading: "lazy"}),
    el("span", {class: "key"}, item.image_key),
    el("div", {class: "muted"}, "suggestion: " + (item.suggestion || "–")));
  const similar = el("button", {type: "button", class: "similar"}, "similar");
  similar.addEventListener("click", (event) => { event.stopPropagation(); selectSimilar(item.image_key); });
  card.append(similar);
  card.addEventListener("click", (event) => {
    const cards = [...document.querySelectorAll("#label-grid .card")];
    if (event.shiftKey && lastClicked) {
      const [a, b] = [cards.indexOf(lastClicked), cards.indexOf(card)].sort((x, y) => x - y);
      cards.slice(a, b + 1).forEach((c) => c.classList.add("selected"));
    } else {
      card.classList.toggle("selected");
    }
    lastClicked = card;
    countSelected();
  });
  return card;
}

async function fillGrid() {
  const grid = $("label-grid");
  const data = await claim(24);
  for (const item of data.items) grid.append(gridCard(item));
  countSelected();
}

async function selectSimilar(key) {
  let data;
  try {
    data = await api("/api/similar", {key, k: 24});
  } catch (err) {
    problem(err.message);
    if (err.status === 503 && err.data?.progress) setTimeout(() => selectSimilar(key), 1000);  // being built
    return;
  }
  problem("");
  const grid = $("label-grid");
  for (const key2 of [key, ...data.items.map((i) => i.image_key)]) {
    let card = grid.querySelector(`.card[data-key="${CSS.escape(key2)}"]`);
    if (!card) grid.prepend(card = gridCard({image_key: key2}));
    card.classList.add("selected");
  }
  countSelected();
}

function labelSelection(category) {
  const cards = selected();
  if (!cards.length) return;
  send(cards.map((c) => c.dataset.key), category, "bulk").catch(() => {});
  $("last").textContent = `${cards.length} images → ${category}`;
  cards.forEach((c) => c.remove());
  countSelected();
  if (document.querySelectorAll("#label-grid .card").length < 12) fillGrid().catch((err) => problem(err.message));
}

// --- keys, categories, progress
function pick(category, t0) {
  if (gridMode) labelSelection(category);
  else label(category, "key", t0);
}

document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
  const t0 = event.timeStamp;  // the key press, on performance.now()'s clock
  if (/^[1-9]$/.test(event.key) && categories[Number(event.key) - 1]) {
    pick(categories[Number(event.key) - 1], t0);
  } else if (event.key === "Enter" && !gridMode && current?.suggestion) {
    label(current.suggestion, "suggestion", t0);
  } else if (event.key === "x" && !gridMode) {
    show(t0);
  } else if (event.key === "z" && !gridMode) {
    undo(t0);
  } else {
    return;
  }
  event.preventDefault();
});

let progressTimer = null;
function refreshProgress() {  // at most twice a second, however fast the labels come
  if (progressTimer) return;
  progressTimer = setTimeout(async () => {
    progressTimer = null;
    const data = await api(BASE);
    const p = data.progress;
    const parts = [`${p.labelled} labelled (${p.today} today) · queues read ${data.source}`,
      "per category: " + Object.entries(p.per_category).map(([c, n]) => `${c} ${n}`).join(", "),
      "per person: " + Object.entries(p.per_person).map(([c, n]) => `${c} ${n}`).join(", ")];
    const e = data.estimate;
    if (e.images) {
      parts.push(`accuracy of ${data.model} on the random sample: ${pct(e.accuracy)} ` +
        `(95%: ${pct(e.interval95[0])}–${pct(e.interval95[1])}, ${e.images} images)`);
    }
    $("progress").textContent = parts.join(" · ");
    if ($("recent-labels")) await loadRecent();
  }, 500);
}

async function start() {
  const data = await api(BASE);
  categories = data.categories;
  $("categories").replaceChildren(...categories.map((c, i) => {
    const button = el("button", {type: "button", "data-category": c}, (i < 9 ? `${i + 1} ` : "") + c);
    button.addEventListener("click", (event) => pick(c, event.timeStamp));
    return el("li", {}, button);
  }));
  refreshProgress();
  await refill();
  show();
}

$("queue").addEventListener("change", () => {
  $("queue").blur();
  buffer = [];
  $("label-grid").replaceChildren();
  (gridMode ? fillGrid() : refill().then(() => show())).catch((err) => problem(err.message));
});

$("grid-mode").addEventListener("change", () => {
  gridMode = $("grid-mode").checked;
  $("grid-mode").blur();
  $("single").hidden = gridMode;
  $("grid-section").hidden = !gridMode;
  if (gridMode && !document.querySelector("#label-grid .card")) fillGrid().catch((err) => problem(err.message));
});

async function loadRecent() {  // admins: who labelled what
  const data = await api(BASE + "/recent", {limit: 50});
  $("recent-labels").querySelector("tbody").replaceChildren(...data.items.map((l) => el("tr", {},
    el("td", {class: "muted"}, new Date(l.at).toLocaleString()), el("td", {}, l.by),
    el("td", {class: "key"}, l.image_key), el("td", {}, l.category ?? "(taken back)"),
    el("td", {class: "muted"}, l.how + (l.queue ? ` · ${l.queue}` : "")))));
}

// --- training: a background job, its progress polled while it runs
let jobsTimer = null;
async function loadJobs() {
  clearTimeout(jobsTimer);
  const data = await api("/api/jobs", {model: PROJECT});
  $("jobs").querySelector("tbody").replaceChildren(...data.items.map((j) => el("tr", {"data-state": j.state},
    el("td", {class: "muted"}, new Date(j.started_at).toLocaleString()), el("td", {}, j.started_by),
    el("td", {class: "job-state"}, j.state),
    el("td", {}, j.version ? el("a", {href: "/models"}, `${j.model}@${j.version}`) : ""),
    el("td", {class: "muted"}, j.message || ""))));
  if (data.items.some((j) => j.state === "running")) jobsTimer = setTimeout(() => loadJobs().catch(() => {}), 2000);
}

const trainButton = $("train");
if (trainButton) {
  trainButton.addEventListener("click", async () => {
    try {
      await post(BASE + "/train", {});
      problem("");
    } catch (err) {
      problem(err.message);
    }
    await loadJobs();
  });
}

start().catch((err) => problem(err.message));
loadJobs().catch((err) => problem(err.message));
