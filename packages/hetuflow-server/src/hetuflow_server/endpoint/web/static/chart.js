// Charts drawn as SVG by the UI itself: stacked bars over time and labelled horizontal bars. No library, no
// CDN. Nodes are built with createElementNS and coloured by classes of style.css (the Content-Security-Policy
// refuses inline styles), each bar carries a <title> for its exact numbers, and every chart has a text
// alternative (aria-label) plus the legend or labels beside it in plain HTML.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const PLOT_H = 180;
const AXIS_H = 20;
const LEFT_W = 34;
const PLOT_W = 1100;

/** An SVG element with attributes (values stringified); children appended. */
export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== null && value !== undefined) node.setAttribute(key, String(value));
  for (const child of children) if (child) node.append(child);
  return node;
}

function title(text) {
  const node = svg("title");
  node.textContent = text;
  return node;
}

function label(x, y, text, anchor = "start") {
  const node = svg("text", { x, y, "text-anchor": anchor, class: "axis-label" });
  node.textContent = text;
  return node;
}

/**
 * Stacked bars, one per bucket: ``series`` is [[key, label], ...] drawn bottom-up with class ``c-<key>``;
 * ``tick(bucket, index)`` gives the x-axis label of a bucket (or null) and ``describe(bucket)`` its tooltip.
 */
export function stackedBars(buckets, series, { tick, describe, summary }) {
  // About PLOT_W wide whatever the number of buckets, so the drawing scales evenly (text keeps its shape).
  const step = Math.max(2, Math.floor(PLOT_W / Math.max(1, buckets.length)));
  const gap = Math.max(1, Math.round(step / 6));
  const barW = step - gap;
  const width = LEFT_W + buckets.length * step;
  const max = Math.max(1, ...buckets.map((bucket) => series.reduce((sum, [key]) => sum + bucket[key], 0)));
  const scale = PLOT_H / max;
  const chart = svg("svg", { class: "chart bars", viewBox: `0 0 ${width} ${PLOT_H + AXIS_H}`, role: "img", "aria-label": summary });
  chart.append(
    svg("line", { x1: LEFT_W - 2, x2: width, y1: PLOT_H, y2: PLOT_H, class: "axis" }),
    label(LEFT_W - 5, 12, String(max), "end"),
    label(LEFT_W - 5, PLOT_H, "0", "end"),
  );
  buckets.forEach((bucket, index) => {
    const x = LEFT_W + index * step;
    let y = PLOT_H;
    const group = svg("g", { class: "bar", "data-index": index }, title(describe(bucket)));
    group.append(svg("rect", { x, y: 0, width: barW, height: PLOT_H, class: "hit" }));
    for (const [key] of series) {
      const height = bucket[key] * scale;
      if (height <= 0) continue;
      y -= height;
      group.append(svg("rect", { x, y, width: barW, height, class: `c-${key}`, "data-series": key }));
    }
    chart.append(group);
    const text = tick(bucket, index);
    if (text) chart.append(label(x, PLOT_H + AXIS_H - 4, text));
  });
  const legend = h("ul", { class: "legend" }, series.map(([key, name]) => h("li", {}, h("span", { class: `swatch c-${key}` }), name)));
  return h("figure", { class: "chart-wrap" }, chart, legend);
}

/**
 * Horizontal bars, one row per item: ``rows`` are {label, href, bars: [{value, key, text}]} with values in
 * 0..``max``; each row shows its label (a link when ``href``), its bars and their texts.
 */
export function barRows(rows, { max, caption, empty }) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  const top = Math.max(max ?? 0, ...rows.flatMap((row) => row.bars.map((bar) => bar.value || 0)), Number.EPSILON);
  return h(
    "table",
    { class: "bar-rows" },
    h("caption", {}, caption),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, row.href ? h("a", { href: row.href }, row.label) : row.label),
          h(
            "td",
            { class: "bar-cell" },
            row.bars.map((bar) => {
              const width = Math.max(0, Math.min(100, ((bar.value || 0) / top) * 100));
              const track = svg("svg", { class: "hbar", viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img", "aria-label": bar.text });
              track.append(svg("rect", { x: 0, y: 0, width: 100, height: 8, class: "track" }), svg("rect", { x: 0, y: 0, width, height: 8, class: `c-${bar.key}` }, title(bar.text)));
              return h("div", { class: "hbar-line" }, track, h("span", { class: "hbar-text" }, bar.text));
            }),
          ),
        ),
      ),
    ),
  );
}
