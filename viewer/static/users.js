// The Users page (admins): list, create (the password is shown once), change role, disable.
// Needs viewer.js (el, api, post, problem).
"use strict";

async function loadUsers() {
  const data = await api("/api/users");
  const me = document.getElementById("whoami")?.textContent.split(" ")[0];
  const rows = data.users.map((u) => {
    const role = el("select", {"aria-label": "role of " + u.name});
    for (const r of ["viewer", "labeller", "admin"]) {
      const option = el("option", {value: r}, r);
      option.selected = r === u.role;
      role.append(option);
    }
    const toggle = el("button", {type: "button"}, u.disabled ? "Enable" : "Disable");
    if (u.name === me) { role.disabled = true; toggle.disabled = true; }
    role.addEventListener("change", () => change(u.name, {role: role.value}));
    toggle.addEventListener("click", () => change(u.name, {disabled: !u.disabled}));
    return el("tr", {"data-name": u.name},
      el("td", {}, u.name), el("td", {}, role), el("td", {}, u.disabled ? "disabled" : "active"),
      el("td", {class: "muted"}, u.last_seen ? shortTime(u.last_seen) : "never"), el("td", {}, toggle));
  });
  document.querySelector("#users tbody").replaceChildren(...rows);
  document.querySelector("#actions tbody").replaceChildren(...data.actions.map((a) => el("tr", {},
    el("td", {class: "muted"}, new Date(a.at).toLocaleString()), el("td", {}, a.actor), el("td", {}, a.action),
    el("td", {}, a.target || ""), el("td", {class: "muted"}, Object.keys(a.detail).length ? JSON.stringify(a.detail) : ""))));
}

async function change(name, what) {
  try {
    await post("/api/users/" + encodeURIComponent(name), what);
    problem("");
  } catch (err) {
    problem(err.message);
  }
  await loadUsers();
}

document.getElementById("new-user").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const shown = document.getElementById("new-password");
  try {
    const made = await post("/api/users", {name: form.name.value, role: form.role.value});
    shown.replaceChildren("Password for ", el("strong", {}, made.name), " (shown once — pass it on now): ",
      el("code", {id: "one-time-password"}, made.password));
    shown.hidden = false;
    form.reset();
    problem("");
  } catch (err) {
    problem(err.message);
  }
  await loadUsers();
});

loadUsers().catch((err) => problem(err.message));
