// Parapet console: draws the charts (uPlot) from the JSON a page carries:
// a distribution's traffic, a plugin's cost. Everything else works without
// scripts.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  if (typeof uPlot === "undefined") return;
  // Draws each [element id, title, [[label, colour, value of a point]]] of
  // `charts` from the points in the JSON element `dataId`, inside `boxId`.
  const draw = (dataId, boxId, charts) => {
    const data = document.getElementById(dataId);
    if (!data) return;
    const points = JSON.parse(data.textContent);
    const x = points.map((p) => p.minute_ms / 1000);
    const width = Math.max(280, Math.min(document.getElementById(boxId).clientWidth - 16, 960));
    for (const [id, title, series] of charts) {
      const element = document.getElementById(id);
      if (!element) continue;
      new uPlot(
        {
          title,
          width,
          height: 200,
          series: [{}, ...series.map(([label, stroke]) => ({ label, stroke, width: 2, points: { show: true } }))],
          axes: [{}, { size: 60 }],
        },
        [x, ...series.map(([, , value]) => points.map(value))],
        element,
      );
    }
  };
  draw("traffic-data", "traffic", [
    ["traffic-requests", "Requests per minute", [
      ["requests", "#0b57d0", (p) => p.requests],
      ["cache hits", "#146c2e", (p) => p.hits],
    ]],
    ["traffic-statuses", "Answers per minute by status", [
      ["2xx", "#146c2e", (p) => p.statuses[1]],
      ["3xx", "#6750a4", (p) => p.statuses[2]],
      ["4xx", "#b06000", (p) => p.statuses[3]],
      ["5xx", "#b3261e", (p) => p.statuses[4]],
    ]],
    ["traffic-bytes", "Bytes per minute", [["bytes", "#0b57d0", (p) => p.bytes]]],
  ]);
  // Means per request; a minute without requests has none.
  const mean = (total, p) => (p.requests ? p[total] / p.requests : null);
  draw("cost-data", "cost", [
    ["cost-time", "Mean µs per request", [
      ["instantiation", "#0b57d0", (p) => mean("instantiate_us", p)],
      ["hooks", "#b06000", (p) => mean("hook_us", p)],
    ]],
    ["cost-requests", "Requests per minute", [
      ["requests", "#146c2e", (p) => p.requests],
      ["failures", "#b3261e", (p) => p.failures],
    ]],
    ["cost-memory", "Peak memory (MiB)", [["peak memory", "#6750a4", (p) => p.peak_memory_bytes / 1048576]]],
  ]);
});
