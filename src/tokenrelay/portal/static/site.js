// The storefront's behaviour, from the package (the CSP allows no inline script): copy buttons
// on code blocks, client tabs on /docs (one choice for every section), the price filter.
"use strict";

function copyButtons() {
  for (const code of document.querySelectorAll("pre > code")) {
    const pre = code.parentElement;
    if (pre.querySelector("button.copy")) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(code.innerText);
        button.textContent = "Copied";
      } catch (e) {
        const range = document.createRange();
        range.selectNodeContents(code);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
    pre.prepend(button);
  }
}

function chooseTab(client) {
  for (const group of document.querySelectorAll("[data-tabs]")) {
    const tabs = group.querySelectorAll('[role="tab"]');
    const known = [...tabs].some((t) => t.dataset.client === client);
    tabs.forEach((tab, i) => {
      const on = known ? tab.dataset.client === client : i === 0;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      document.getElementById(tab.getAttribute("aria-controls")).hidden = !on;
    });
  }
}

function tabs() {
  const groups = document.querySelectorAll("[data-tabs]");
  if (!groups.length) return;
  for (const group of groups) {
    group.querySelector('[role="tablist"]').hidden = false;
    group.addEventListener("click", (ev) => {
      const tab = ev.target.closest('[role="tab"]');
      if (!tab) return;
      try { localStorage.setItem("client", tab.dataset.client); } catch (e) {}
      const top = tab.getBoundingClientRect().top;
      chooseTab(tab.dataset.client);
      window.scrollBy(0, tab.getBoundingClientRect().top - top);  // keep the tab in place
    });
  }
  let saved = null;
  try { saved = localStorage.getItem("client"); } catch (e) {}
  chooseTab(saved || groups[0].querySelector('[role="tab"]').dataset.client);
}

function priceFilter() {
  const box = document.querySelector("[data-price-filters]");
  if (!box) return;
  const search = box.querySelector("[data-price-search]");
  const vendors = [...box.querySelectorAll("[data-vendor-filter]")];
  const rows = [...document.querySelectorAll("table.prices tbody tr")];
  const empty = document.querySelector("[data-price-empty]");
  const count = document.querySelector("[data-price-count]");
  const apply = () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const on = new Set(vendors.filter((v) => v.checked).map((v) => v.value));
    let shown = 0;
    for (const row of rows) {
      const hit = on.has(row.dataset.vendor) && words.every((w) => row.dataset.search.includes(w));
      row.hidden = !hit;
      shown += hit ? 1 : 0;
    }
    empty.hidden = shown > 0;
    count.textContent = `${shown} of ${rows.length} models shown.`;
  };
  search.addEventListener("input", apply);
  vendors.forEach((v) => v.addEventListener("change", apply));
  apply();
}

document.addEventListener("DOMContentLoaded", () => {
  copyButtons();
  tabs();
  priceFilter();
});
