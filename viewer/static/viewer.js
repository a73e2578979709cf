// The viewer's pages render from the JSON API and poll it for new rows. Every value from the
// database goes into the page as text (textContent / attributes), never as HTML.
"use strict";

const body = document.body;
const MODEL = body.dataset.model;
const REFRESH_MS = Number(body.dataset.refreshMs) || 3000;
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

const pct = (p) => (p * 100).toFixed(1) + "%";
const shortTime = (iso) => new Date(iso).toLocaleTimeString();

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content;

async function answer(resp) {
  if (resp.status === 401) {  // the session ended (logout elsewhere, disabled, expired)
    location.assign("/login?" + new URLSearchParams({next: location.pathname + location.search}));
  }
  const data = await resp.json().catch(() => ({error: resp.statusText}));
  if (!resp.ok) throw Object.assign(new Error(data.error || resp.statusText), {status: resp.status, data});
  return data;
}

async function api(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null));
  return answer(await fetch(path + "?" + query));
}

// A change: JSON with the page's CSRF token (viewer/auth.py refuses any POST without it).
async function post(path, payload) {
  const headers = {"Content-Type": "application/json", "X-CSRFToken": CSRF};
  return answer(await fetch(path, {method: "POST", headers, body: JSON.stringify(payload)}));
}

function problem(message) {
  const box = document.getElementById("problem");
  box.hidden = !message;
  box.textContent = message || "";
}

function live(fn) {
  const run = async () => {
    try {
      await fn();
      problem("");
      document.getElementById("live").textContent = "live · updated " + new Date().toLocaleTimeString();
    } catch (err) {
      problem(String(err.message || err));
    }
  };
  run();
  setInterval(run, REFRESH_MS);
}

function card(item) {
  const href = "/image?" + new URLSearchParams({key: item.image_key, model: item.model});
  const thumb = (size) => "/thumb?" + new URLSearchParams({key: item.image_key, size});
  const top = el("ol", {class: "topk"});
  for (const p of item.top_k.slice(0, 3)) {
    top.append(el("li", {}, el("span", {class: "label"}, p.category),
                  el("meter", {min: 0, max: 1, value: p.confidence}), el("span", {class: "pct"}, pct(p.confidence))));
  }
  return el("article", {class: "card", "data-key": item.image_key, "data-category": item.category},
    el("a", {href}, el("img", {src: thumb(160), srcset: thumb(320) + " 2x", alt: item.image_key, loading: "lazy",
                               width: 160, height: 160})),
    el("div", {class: "category"}, item.category,
       item.model_version ? el("span", {class: "muted"}, ` · ${item.model}@${item.model_version}`) : ""),
    top,
    el("div", {class: "key"}, item.image_key),
    el("div", {class: "muted"}, item.hostname + " · " + shortTime(item.time)));
}

function predictionsPage() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const [k, v] of params) if (form.elements[k]) form.elements[k].value = v;
  const filters = Object.fromEntries(["model", "q", "category", "host", "min_confidence", "max_confidence"]
    .map((k) => [k, params.get(k) || ""]));
  const limit = 48;
  let offset = Math.max(0, Number(params.get("offset")) || 0);
  let shown = "";

  api("/api/models").then(({names}) => {
    for (const m of names) form.elements.model.append(el("option", {value: m}, m));
    form.elements.model.value = filters.model || MODEL;
  }).catch(() => {});
  api("/api/hosts", {model: filters.model}).then(({items}) => {
    for (const h of items) form.elements.host.append(el("option", {value: h}, h));
    form.elements.host.value = filters.host;
  }).catch(() => {});
  api("/api/classes", {limit: 1000, model: filters.model}).then(({items}) => {
    const list = document.getElementById("categories");
    for (const c of items) list.append(el("option", {value: c.category}));
  }).catch(() => {});

  const go = (delta) => {
    offset = Math.max(0, offset + delta);
    params.set("offset", offset);
    history.replaceState(null, "", "?" + params);
    refresh();
  };
  document.getElementById("prev").onclick = () => go(-limit);
  document.getElementById("next").onclick = () => go(limit);

  async function refresh() {
    const data = await api("/api/predictions", {...filters, limit, offset});
    const signature = JSON.stringify(data.items.map((i) => [i.image_key, i.time]));
    document.getElementById("total").textContent =
      (data.total_is_floor ? "more than " : "") + data.total + " matching" +
      (data.total ? `, ${offset + 1}–${offset + data.items.length} shown` : "");
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled =
      data.items.length < limit || (!data.total_is_floor && offset + data.items.length >= data.total);
    if (signature === shown) return;  // nothing new: keep the images that are already loaded
    shown = signature;
    document.getElementById("grid").replaceChildren(...data.items.map(card));
  }
  live(refresh);
}

function drawChart(rates) {
  const chart = document.getElementById("chart");
  const W = 800, H = 240, L = 40, B = 20;
  const end = new Date(rates.now).getTime(), start = end - rates.minutes * 60000;
  const hosts = Object.keys(rates.hosts);
  const ymax = Math.max(1, ...hosts.flatMap((h) => rates.hosts[h].map(([, r]) => r)));
  const x = (t) => L + (W - L - 5) * (t - start) / (end - start);
  const y = (r) => H - B - (H - B - 5) * r / ymax;
  const nodes = [svg("line", {x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#999"}),
                 svg("line", {x1: L, y1: 0, x2: L, y2: H - B, stroke: "#999"})];
  for (const frac of [0.5, 1]) {
    const label = svg("text", {x: L - 4, y: y(ymax * frac) + 4, "text-anchor": "end", "font-size": 11});
    label.textContent = (ymax * frac).toFixed(1);
    nodes.push(label);
  }
  for (const [t, text] of [[start, `-${rates.minutes} min`], [end, "now"]]) {
    const label = svg("text", {x: x(t), y: H - 4, "text-anchor": t === end ? "end" : "start", "font-size": 11});
    label.textContent = text;
    nodes.push(label);
  }
  const legend = document.getElementById("legend");
  legend.replaceChildren();
  hosts.forEach((h, i) => {
    const color = COLORS[i % COLORS.length];
    const xy = rates.hosts[h].map(([t, r]) => [x(new Date(t).getTime()).toFixed(1), y(r).toFixed(1)]);
    nodes.push(svg("polyline", {points: xy.map((p) => p.join(",")).join(" "), fill: "none", stroke: color,
                                "stroke-width": 2, "data-host": h}));
    // Dots too: a host with a single bin would otherwise draw nothing.
    for (const [cx, cy] of xy) nodes.push(svg("circle", {cx, cy, r: 3, fill: color, "data-host": h}));
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = color;
    legend.append(el("li", {}, swatch, h));
  });
  if (!hosts.length) {
    const empty = svg("text", {x: W / 2, y: H / 2, "text-anchor": "middle"});
    empty.textContent = "no images classified in this window";
    nodes.push(empty);
  }
  chart.replaceChildren(...nodes);
}

function rows(tbody, data, cells) {
  tbody.replaceChildren(...data.map((d) => el("tr", {}, ...cells(d).map((c) => el("td", {}, c)))));
}

function fleetPage() {
  live(async () => {
    const [stats, errors] = await Promise.all([api("/api/stats", {minutes: 10, bin: 10}), api("/api/errors")]);
    drawChart(stats.rates);
    const totals = document.getElementById("totals");
    totals.replaceChildren(...[["classified", stats.results_total], ["errors", stats.errors_total],
      ["registered keys", stats.registered_keys], ["keys without a row", stats.keys_without_row],
      ...Object.entries(stats.errors_by_type).map(([t, n]) => ["errors: " + t, n]),
      ...Object.entries(stats.arrivals || {}).flatMap(([source, kinds]) =>
        Object.entries(kinds).map(([kind, n]) => [`arrived by ${source}: ${kind}`, n]))]
      .map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    rows(document.querySelector("#hosts tbody"), stats.hosts, (h) => [h.hostname, h.last_minute, h.total]);
    const k = stats.kafka;
    document.getElementById("group").textContent = k.error ? k.error
      : `topic ${k.topic}, group ${k.group} ${k.group_state}, ${k.members.length} member(s), total lag ${k.total_lag}`;
    rows(document.querySelector("#lag tbody"), k.partitions || [],
         (p) => [p.partition, p.committed ?? "–", p.end, p.lag]);
    rows(document.querySelector("#errors tbody"), errors.items,
         (e) => [e.image_key, e.error_type, e.detail, e.hostname, shortTime(e.time)]);
  });
}

function classesPage() {
  live(async () => {
    const {items} = await api("/api/classes", {limit: 100});
    const max = Math.max(1, ...items.map((c) => c.count));
    rows(document.querySelector("#classes tbody"), items, (c) => [
      el("a", {href: "/?" + new URLSearchParams({category: c.category})}, c.category),
      el("meter", {min: 0, max, value: c.count}), c.count]);
  });
}

function confusionTable(m) {
  const head = el("tr", {}, el("th", {}, "true \\ predicted"), ...m.categories.map((c) => el("th", {}, c)));
  const body = m.confusion.map((row, i) => el("tr", {}, el("th", {}, m.categories[i]),
    ...row.map((n, j) => el("td", {class: i === j ? "diag" : (n ? "off" : "")}, n))));
  return el("table", {class: "confusion"}, el("thead", {}, head), el("tbody", {}, ...body));
}

function modelsPage() {
  live(async () => {
    const {versions} = await api("/api/models");
    const list = document.getElementById("versions");
    if (!versions.length) {
      list.replaceChildren(el("p", {class: "muted"}, "No model of your own yet: python -m training fit DATA --name NAME"));
      return;
    }
    list.replaceChildren(...versions.slice().reverse().map((v) => {
      const m = v.metrics || {};
      const per = Object.entries(m.per_category || {}).map(([c, x]) =>
        el("tr", {}, el("td", {}, c), el("td", {}, (m.images_per_category || {})[c] ?? ""), el("td", {}, x.precision),
           el("td", {}, x.recall), el("td", {}, x.f1)));
      const agreement = v.shadow_agreement && v.shadow_agreement.images
        ? `shadow agreement with ${v.shadow_agreement.production}: ${pct(v.shadow_agreement.agreement)} on ` +
          `${v.shadow_agreement.images} images, ${v.shadow_agreement.shadow_ms_per_image} ms/image` : "";
      return el("section", {class: "model " + v.stage, "data-ref": `${v.name}@${v.version}`},
        el("h2", {}, `${v.name}@${v.version} `, el("span", {class: "stage"}, v.stage)),
        window.modelActions ? window.modelActions(v, versions) : "",
        el("p", {}, `validation top-1 ${m.top1 !== undefined ? pct(m.top1) : "–"} on ${m.val_images ?? "–"} images; ` +
           `${v.categories.length} categories; trained ${m.training_seconds ?? "–"} s; ${v.created_at}`),
        agreement ? el("p", {}, agreement) : "",
        agreement ? el("details", {}, el("summary", {}, "agreement per production category"),
          el("table", {class: "agreement"}, el("tbody", {}, ...Object.entries(v.shadow_agreement.per_category)
            .map(([c, a]) => el("tr", {}, el("td", {}, c), el("td", {}, a.images), el("td", {}, pct(a.agreement))))))) : "",
        el("details", {}, el("summary", {}, "per category and confusion matrix"),
          el("table", {}, el("thead", {}, el("tr", {}, ...["category", "images", "precision", "recall", "F1"]
            .map((h) => el("th", {}, h)))), el("tbody", {}, ...per)),
          m.confusion ? confusionTable(m) : ""));
    }));
  });
}

// The image page: the images most like this one, from its stored embedding.
async function similarSection(section) {
  const status = document.getElementById("similar-status");
  const grid = document.getElementById("similar-grid");
  try {
    const data = await api("/api/similar", {key: section.dataset.key, k: 12, model: MODEL});
    status.textContent = data.items.length ? "" : "no other image has an embedding yet";
    for (const item of data.items) {
      const href = "/image?" + new URLSearchParams({key: item.image_key, model: MODEL});
      const thumb = "/thumb?" + new URLSearchParams({key: item.image_key, size: 160});
      grid.append(el("a", {class: "card", href, "data-key": item.image_key},
        el("img", {src: thumb, alt: item.image_key, loading: "lazy", width: 160, height: 160}),
        el("div", {class: "category"}, item.category ?? "–"),
        el("div", {class: "muted"}, "similarity " + item.score.toFixed(2)),
        el("div", {class: "key"}, item.image_key)));
    }
  } catch (err) {
    status.textContent = String(err.message || err);
    if (err.status === 503 && err.data?.progress) setTimeout(() => similarSection(section), 1000);  // being built
  }
}

({predictions: predictionsPage, fleet: fleetPage, classes: classesPage, models: modelsPage})[body.dataset.page]?.();
const similarBox = document.getElementById("similar");
if (similarBox) similarSection(similarBox);
