// Daily spend chart (uPlot): the data comes in data- attributes, no inline script (CSP-friendly).
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("spend-chart");
  if (!el || typeof uPlot === "undefined") return;
  const days = JSON.parse(el.dataset.days || "[]");
  const costs = JSON.parse(el.dataset.costs || "[]");
  const xs = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const width = Math.min(el.clientWidth || 600, 900);
  const money = (x) => "$" + (x >= 0.01 || x === 0 ? x.toFixed(2) : x.toPrecision(2));
  new uPlot({
    width, height: 220,
    series: [{}, {label: "USD", stroke: "#3559c7", fill: "rgba(53,89,199,.12)",
                  value: (u, v) => v == null ? "--" : money(v), points: {size: 7}}],
    axes: [{}, {size: 90, values: (u, v) => v.map(money)}],
  }, [xs, costs], el);
});
