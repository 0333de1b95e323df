// Parapet console: draws the traffic charts (uPlot) from the JSON the
// distribution page carries. Everything else works without scripts.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("traffic-data");
  if (!data || typeof uPlot === "undefined") return;
  const points = JSON.parse(data.textContent);
  const x = points.map((p) => p.minute_ms / 1000);
  const width = () => Math.max(280, Math.min(document.getElementById("traffic").clientWidth - 16, 960));
  const chart = (id, title, series) => {
    const element = document.getElementById(id);
    if (!element) return;
    new uPlot(
      {
        title,
        width: width(),
        height: 200,
        series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, points: { show: true } }))],
        axes: [{}, { size: 60 }],
      },
      [x, ...series.map(([, , value]) => points.map(value))],
      element,
    );
  };
  chart("traffic-requests", "Requests per minute", [
    ["requests", "#0b57d0", (p) => p.requests],
    ["cache hits", "#146c2e", (p) => p.hits],
  ]);
  chart("traffic-statuses", "Answers per minute by status", [
    ["2xx", "#146c2e", (p) => p.statuses[1]],
    ["3xx", "#6750a4", (p) => p.statuses[2]],
    ["4xx", "#b06000", (p) => p.statuses[3]],
    ["5xx", "#b3261e", (p) => p.statuses[4]],
  ]);
  chart("traffic-bytes", "Bytes per minute", [["bytes", "#0b57d0", (p) => p.bytes]]);
});
