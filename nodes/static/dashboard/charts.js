// Two small SVG charts for the dashboard, drawn by hand (no chart library is shipped).
// Charts.load(svg, samples, windowMs, nowMs): slots used and total over time.
// Charts.bars(svg, points, windowMs, nowMs): jobs placed per minute.
"use strict";
window.Charts = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 480, H = 160, LEFT = 34, RIGHT = 8, TOP = 10, BOTTOM = 20;

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function frame(svg, maxY, windowMs) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const bottom = H - BOTTOM;
    svg.appendChild(el("line", { x1: LEFT, y1: bottom, x2: W - RIGHT, y2: bottom, class: "axis" }));
    svg.appendChild(el("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: bottom, class: "axis" }));
    svg.appendChild(el("line", { x1: LEFT, y1: TOP, x2: W - RIGHT, y2: TOP, class: "gridline" }));
    svg.appendChild(el("text", { x: LEFT - 4, y: TOP + 4, class: "tick", "text-anchor": "end" }, String(maxY)));
    svg.appendChild(el("text", { x: LEFT - 4, y: bottom, class: "tick", "text-anchor": "end" }, "0"));
    const minutes = Math.round(windowMs / 60000);
    svg.appendChild(el("text", { x: LEFT, y: H - 4, class: "tick" }, "−" + minutes + " min"));
    svg.appendChild(el("text", { x: W - RIGHT, y: H - 4, class: "tick", "text-anchor": "end" }, "now"));
  }

  function scaler(maxY, windowMs, nowMs) {
    const start = nowMs - windowMs;
    return {
      x: (t) => LEFT + ((t - start) / windowMs) * (W - LEFT - RIGHT),
      y: (v) => H - BOTTOM - (v / maxY) * (H - BOTTOM - TOP),
    };
  }

  function empty(svg, message) {
    svg.appendChild(el("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" }, message));
  }

  function load(svg, samples, windowMs, nowMs) {
    const maxY = Math.max(1, ...samples.map((s) => Math.max(s.total || 0, s.used || 0)));
    frame(svg, maxY, windowMs);
    if (!samples.length) return empty(svg, "no sample yet (the worker takes one every 10 s)");
    const scale = scaler(maxY, windowMs, nowMs);
    const path = (key) => samples.map((s) => scale.x(s.t).toFixed(1) + "," + scale.y(s[key] || 0).toFixed(1)).join(" ");
    svg.appendChild(el("polyline", { points: path("total"), class: "series-total" }));
    svg.appendChild(el("polyline", { points: path("used"), class: "series-used" }));
    const last = samples[samples.length - 1];
    svg.appendChild(el("text", { x: W - RIGHT, y: TOP + 12, class: "legend", "text-anchor": "end" },
      "used " + last.used + " of " + last.total + (last.cpu === null || last.cpu === undefined ? "" : " · cpu " + last.cpu + "%")));
  }

  function bars(svg, points, windowMs, nowMs) {
    const maxY = Math.max(1, ...points.map((p) => p.placed));
    frame(svg, maxY, windowMs);
    if (!points.some((p) => p.placed > 0)) return empty(svg, "no job in the last 15 minutes");
    const scale = scaler(maxY, windowMs, nowMs);
    const width = Math.max(2, (W - LEFT - RIGHT) / (windowMs / 60000) - 3);
    for (const p of points) {
      const x = scale.x(p.t), y = scale.y(p.placed);
      if (x + width < LEFT) continue;
      const left = Math.max(LEFT, x), right = Math.min(W - RIGHT, x + width);
      if (right <= left) continue;
      const bar = el("rect", { x: left.toFixed(1), y: y.toFixed(1), width: (right - left).toFixed(1),
        height: (H - BOTTOM - y).toFixed(1), class: "bar" });
      bar.appendChild(el("title", {}, p.placed + " jobs in the minute from " + new Date(p.t).toLocaleTimeString()));
      svg.appendChild(bar);
    }
  }

  return { load: load, bars: bars };
})();
