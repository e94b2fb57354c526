// Spend and requests over time, by model or by key (uPlot). The data comes in a data- attribute,
// no inline script (CSP-friendly); the two selects redraw the chart without a page load.
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("usage-chart");
  if (!el || typeof uPlot === "undefined") return;
  const data = JSON.parse(el.dataset.chart || "{}");
  const metric = document.querySelector("[data-chart-metric]");
  const split = document.querySelector("[data-chart-split]");
  const colors = ["#3559c7", "#d0602a", "#2a9d6a", "#a03cb4", "#c9a227", "#6b7280"];
  // The portal's one money format: six decimals (web.py's PLACES).
  const money = (x) => "$" + x.toFixed(6);
  const count = (x) => String(Math.round(x));
  let plot = null;

  function draw() {
    const by = data[split ? split.value : "model"];
    const kind = metric ? metric.value : "cost";
    const fmt = kind === "cost" ? money : count;
    if (plot) plot.destroy();
    const width = Math.max(Math.min(el.clientWidth || 600, 900), 280);
    plot = new uPlot({
      width, height: width < 500 ? 200 : 240,
      cursor: {points: {size: 7}},
      series: [{}, ...by.names.map((name, i) => ({
        label: name, stroke: colors[i % colors.length], width: 2,
        value: (u, v) => v == null ? "--" : fmt(v), points: {size: 5},
      }))],
      // Requests come whole: ticks at whole numbers only.
      axes: [{}, {size: kind === "cost" ? 80 : 50, values: (u, vs) => vs.map(kind === "cost" ?
        (v) => "$" + (v >= 0.01 || v === 0 ? v.toFixed(2) : v.toPrecision(2)) : count),
        ...(kind === "cost" ? {} : {incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 1e5, 1e6]})}],
    }, [data.x, ...by[kind]], el);
    el.setAttribute("aria-label", (kind === "cost" ? "Spend" : "Requests") + " by " +
      (split ? split.value : "model") + ": " + by.names.join(", "));
  }
  if (metric) metric.addEventListener("change", draw);
  if (split) split.addEventListener("change", draw);
  draw();
});
