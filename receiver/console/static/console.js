// Progressive enhancement of the console's pages: every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll(".js-only")) el.hidden = false;
  confirmations();
  ruleEditor(document.getElementById("rule-form"));
  pollBackfill();
});

function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

function ruleEditor(form) {
  if (!form) return;
  const rows = { condition: "#conditions .condition", field: "#fields .lead-field" };
  const addRow = (kind) => {
    const all = form.querySelectorAll(rows[kind]);
    const last = all[all.length - 1];
    const row = last.cloneNode(true);
    const n = all.length + 1;
    for (const input of row.querySelectorAll("input")) input.value = "";
    for (const control of row.querySelectorAll("[id]")) {
      const label = row.querySelector(`label[for="${control.id}"]`);
      control.id = control.id.replace(/\d+$/, String(n));
      if (label) {
        label.htmlFor = control.id;
        label.textContent = label.textContent.replace(/\d+/, String(n));
      }
    }
    last.after(row);
    return row;
  };
  const emptyRow = (kind) =>
    [...form.querySelectorAll(rows[kind])].find((row) => !row.querySelector("input").value) ||
    addRow(kind);
  for (const button of form.querySelectorAll("[data-add]")) {
    button.addEventListener("click", () => addRow(button.dataset.add).querySelector("input").focus());
  }
  for (const button of document.querySelectorAll("[data-pick]")) {
    button.addEventListener("click", () => {
      const path = button.dataset.path;
      const row = emptyRow(button.dataset.pick);
      const inputs = row.querySelectorAll("input");
      if (button.dataset.pick === "condition") {
        inputs[0].value = path;
        row.querySelector("select").value = "exists";
      } else {
        const last = path.split(".").pop();
        inputs[0].value = /^[A-Za-z_][A-Za-z0-9_]*$/.test(last) ? last : "field";
        inputs[1].value = path;
      }
      preview();
    });
  }
  let timer = null;
  let asked = 0;
  const preview = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      const response = await fetch(form.dataset.preview, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
      });
      if (mine !== asked || !response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("preview");
      if (fresh) document.getElementById("preview").replaceWith(fresh);
    }, 350);
  };
  form.addEventListener("input", preview);
  form.addEventListener("change", preview);
  preview();
}

function pollBackfill() {
  const tick = async () => {
    const panel = document.getElementById("backfill");
    if (!panel || !panel.dataset.poll) return;
    const response = await fetch(panel.dataset.poll, { credentials: "same-origin" });
    if (response.ok) {
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("backfill");
      if (fresh) panel.replaceWith(fresh);
    }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
}
