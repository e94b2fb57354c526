// Console charts (uPlot). Data come in data- attributes, no inline script (CSP-friendly).
document.addEventListener("DOMContentLoaded", () => {
  if (typeof uPlot === "undefined") return;
  const money = (x) => x == null ? "--" : "$" + (Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(2) : x.toPrecision(2));
  const plot = (el, series, data, axisFmt) => {
    const width = Math.max(Math.min(el.clientWidth || 600, 900), 240);
    // Points as well as lines: a range with one busy day still shows its values.
    series = series.map((s) => ({points: {show: true, size: 5}, spanGaps: true, ...s}));
    new uPlot({width, height: 200, series: [{}, ...series],
      axes: [{}, {size: 70, values: (u, v) => v.map(axisFmt || ((x) => x))}]}, data, el);
  };
  const box = document.getElementById("overview-charts");
  if (box) {
    const d = JSON.parse(box.dataset.series);
    const at = (name) => box.querySelector(`[data-chart="${name}"]`);
    plot(at("money"), [
      {label: "Revenue", stroke: "#3559c7", value: (u, v) => money(v)},
      {label: "Upstream", stroke: "#b42318", value: (u, v) => money(v)},
      {label: "Margin", stroke: "#1f7a3a", value: (u, v) => money(v)}],
      [d.x, d.revenue, d.upstream, d.margin], money);
    plot(at("traffic"), [
      {label: "Requests", stroke: "#3559c7"},
      {label: "Errors %", stroke: "#b42318"}], [d.x, d.requests, d.error_rate]);
    plot(at("latency"), [
      {label: "p50", stroke: "#3559c7"}, {label: "p95", stroke: "#6b84d8"},
      {label: "TTFT p50", stroke: "#1f7a3a"}, {label: "TTFT p95", stroke: "#6fbf86"}],
      [d.x, d.p50, d.p95, d.ttft50, d.ttft95]);
  }
  const spend = document.getElementById("spend-chart");
  if (spend) {
    const days = JSON.parse(spend.dataset.days || "[]");
    const xs = days.map((s) => Date.parse(s + "T00:00:00Z") / 1000);
    plot(spend, [{label: "USD", stroke: "#3559c7", fill: "rgba(53,89,199,.12)", value: (u, v) => money(v)}],
      [xs, JSON.parse(spend.dataset.costs || "[]")], money);
  }
});
