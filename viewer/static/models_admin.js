// The Models page for admins: shadow, promote, stop shadowing, roll back. Each asks for a
// second click to confirm (in the page, not a dialog), then POSTs /api/models/NAME/N/stage.
// Needs viewer.js (el, post, api, pct, problem); viewer.js's modelsPage calls modelActions.
"use strict";

const armed = new Set();  // actions waiting for their confirming click (kept across the page's refreshes)

function stageButton(label, stage, target, action) {
  const ref = `${target.name}@${target.version}`;
  const key = `${ref}:${stage}`;
  const text = () => (armed.has(key) ? `Confirm: ${label} ${ref}?` : action === "rollback" ? `${label} ${ref}` : label);
  const button = el("button", {type: "button", "data-action": action}, text());
  button.addEventListener("click", async () => {
    if (!armed.has(key)) {
      armed.add(key);
      button.textContent = text();
      setTimeout(() => armed.delete(key), 15000);
      return;
    }
    armed.delete(key);
    button.disabled = true;
    try {
      await post(`/api/models/${encodeURIComponent(target.name)}/${target.version}/stage`, {stage});
      problem("");
    } catch (err) {
      problem(err.message);
    }
  });
  return button;
}

function labelledAccuracy(v, box) {
  const line = el("span", {class: "muted labelled-accuracy"});
  box.append(line);
  api(`/api/models/${encodeURIComponent(v.name)}/labelled`).then((data) => {
    const part = (role) => {
      const r = data[role];
      return r && r.images ? `${role} @${r.version} ${pct(r.accuracy)} of ${r.images}` : `${role}: no labelled image yet`;
    };
    line.textContent = `on labelled images: ${part("production")}, ${part("shadow")} ` +
      "(a version trained on these labels has seen most of them)";
  }).catch(() => {});
}

window.modelActions = (v, versions) => {
  const box = el("p", {class: "actions"});
  if (v.stage === "candidate") box.append(stageButton("Shadow", "shadow", v, "shadow"));
  if (v.stage !== "production") box.append(stageButton("Promote", "production", v, "promote"));
  if (v.stage === "shadow") {
    box.append(stageButton("Stop shadowing", "candidate", v, "unshadow"));
    labelledAccuracy(v, box);
  }
  if (v.stage === "production") {
    const previous = versions.filter((o) => o.name === v.name && o.stage === "retired")
      .sort((a, b) => (b.stage_changed_at || "").localeCompare(a.stage_changed_at || ""))[0];
    if (previous) box.append(stageButton("Roll back to", "production", previous, "rollback"));
  }
  return box;
};
