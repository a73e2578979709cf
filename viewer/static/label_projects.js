// The labelling projects page: the list, and an admin's form to start one. Needs viewer.js.
"use strict";

async function loadProjects() {
  const data = await api("/api/label/projects");
  document.getElementById("no-projects").hidden = data.items.length > 0;
  document.querySelector("#projects tbody").replaceChildren(...data.items.map((p) => el("tr", {"data-model": p.model},
    el("td", {}, el("a", {href: "/label/" + encodeURIComponent(p.model)}, p.model)),
    el("td", {}, p.categories.join(", ")), el("td", {}, p.labelled_keys), el("td", {class: "muted"}, p.created_by),
    el("td", {}, el("a", {href: "/api/label/" + encodeURIComponent(p.model) + "/labels.csv"}, "export CSV")))));
}

const form = document.getElementById("new-project");
if (form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = {model: form.model.value.trim()};
    if (form.from_model.checked) payload.from_model = true;
    else payload.categories = form.categories.value.split("\n").map((c) => c.trim()).filter(Boolean);
    try {
      await post("/api/label/projects", payload);
      form.reset();
      problem("");
    } catch (err) {
      problem(err.message);
    }
    await loadProjects();
  });
}

loadProjects().catch((err) => problem(err.message));
