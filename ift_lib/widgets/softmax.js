/**
 * softmax.js: front end of ift_lib.widgets.SoftmaxWidget (Chapter 2, softmax vs sparsemax).
 *
 * Python computes every number shown here (ift_lib.softmax.softmax, sparsemax,
 * sparsemax_threshold and jax.jacobian of them, see softmax.py) and stores it in the widget
 * model; this file only DRAWS and LOOKS UP. Model traits:
 *   table    {n, temperatures[K], jac_scale_min, presets[P]: {name, label, theta[n],
 *             softmax[K][n], sparsemax[K][n], tau[K], support_size[K],
 *             jac_softmax[K][n][n], jac_sparsemax[K][n][n]}}
 *            (Jacobians d/dtheta of f(theta / T), so including the factor 1/T; row i = output,
 *             column j = score)
 *            (the heatmaps' colour scale is +-max(largest |entry| of both, jac_scale_min))
 *   preset   index of the current preset  (synced both ways with Python)
 *   t_index  index of the current temperature  (synced both ways with Python)
 *   palette  named colours (ift_lib.plotting.PALETTE)
 *
 * The root element (.ift-softmax-widget) carries data-temperature, data-preset,
 * data-support-size, data-tau, data-softmax and data-sparsemax (comma-separated) at full
 * precision, for tests and curious readers.
 */

const BAR = { width: 292, height: 150, left: 30, right: 6, top: 18, bottom: 22 };
const CELL = 34;            // side of a Jacobian cell, SVG user units (~ CSS px)
const HEAT_PAD = 18;        // room for the row / column labels of a heatmap
const SCALE = { width: 58, barWidth: 12 };   // the shared colour bar

/* ------------------------------------------------------------------ helpers */

/** Fixed decimals, typographic minus, never "-0.00" (same rule as _fmt in softmax.py). */
function fmt(v, decimals = 2) {
  let s = v.toFixed(decimals);
  if (Number(s) === 0) s = s.replace("-", "");
  return s.replace("-", "\u2212");
}

/** A temperature for reading: 3 significant digits, no exponent (same rule as _fmt_t). */
const fmtT = (t) => String(Number(t.toPrecision(3)));

/** A stored number as it is (shortest round-trip form), typographic minus. */
const exact = (v) => String(v).replace(/-/g, "\u2212");

/** Subscript digits for indices 1..9. */
const sub = (k) => String(k).split("").map((d) => String.fromCharCode(0x2080 + Number(d))).join("");

/** Label of a bar: 2 decimals; "<0.01" for a positive value that would print as 0.00. */
const barLabel = (v) => (v === 0 ? "0" : v < 0.005 ? "<0.01" : fmt(v));

/** Label of a Jacobian cell: "0" only for an exact zero, "≈0" for a tiny nonzero. */
function cellLabel(v) {
  if (v === 0) return "0";
  if (Math.abs(v) < 0.005) return "\u22480";
  return fmt(v, Math.abs(v) >= 9.995 ? 1 : 2);
}

/** "#rrggbb" -> [r, g, b]. */
const rgb = (hex) => [1, 3, 5].map((k) => parseInt(hex.slice(k, k + 2), 16));

/** Mix of white and `hex`, w in [0, 1] (0: white). */
function tint(hex, w) {
  const c = rgb(hex).map((x) => Math.round(255 + (x - 255) * Math.min(Math.max(w, 0), 1)));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

/* ------------------------------------------------------------------ building the DOM */

/** Preset buttons, the theta readout and the temperature slider. */
function buildControls(root) {
  const controls = htmlEl("div", "ift-controls", root);
  const presetRow = htmlEl("div", "ift-preset-row", controls);
  htmlEl("span", "ift-row-label", presetRow, "Scores \u03b8:");
  const presets = htmlEl("div", "ift-presets", presetRow);
  presets.setAttribute("role", "group");
  presets.setAttribute("aria-label", "Score vector \u03b8");
  const theta = htmlEl("span", "ift-theta", presetRow);

  const sliderRow = htmlEl("label", "ift-slider-row", controls);
  const name = htmlEl("span", "ift-row-label", sliderRow, "Temperature ");
  const value = htmlEl("output", "ift-t-value", name);
  const slider = htmlEl("input", "ift-slider", sliderRow);
  slider.type = "range";
  slider.step = 1;
  slider.min = 0;
  const ends = htmlEl("span", "ift-slider-ends", sliderRow);
  return { presets, theta, value, slider, ends, buttons: [] };
}

/** One bar chart (title, subtitle, SVG); returns the parts that change. */
function buildBars(parent, title, ariaLabel, n) {
  const fig = htmlEl("figure", "ift-chart", parent);
  const head = htmlEl("figcaption", "ift-chart-head", fig);
  htmlEl("span", "ift-chart-title", head, title);
  const note = htmlEl("span", "ift-chart-note", head);
  const { width, height, left, right, top, bottom } = BAR;
  const svg = svgEl("svg", {
    class: "ift-bars", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": ariaLabel,
  }, fig);
  const y = (v) => top + (1 - v) * (height - top - bottom);
  const slot = (width - left - right) / n;
  const axes = svgEl("g", { class: "ift-axes" }, svg);
  [0, 0.5, 1].forEach((v) => {
    svgEl("line", { class: v === 0 ? "ift-baseline" : "ift-gridline", x1: left, x2: width - right, y1: y(v), y2: y(v) }, axes);
    svgEl("text", { x: left - 5, y: y(v) + 4, "text-anchor": "end", class: "ift-tick" }, axes).textContent =
      v === 0.5 ? "0.5" : String(v);
  });
  const bars = [];
  for (let i = 0; i < n; i += 1) {
    const cx = left + (i + 0.5) * slot;
    const g = svgEl("g", { class: "ift-bar" }, svg);
    const rect = svgEl("rect", { x: cx - slot * 0.32, width: slot * 0.64, y: y(0), height: 0, rx: 2 }, g);
    const stub = svgEl("line", { class: "ift-stub", x1: cx - slot * 0.32, x2: cx + slot * 0.32, y1: y(0), y2: y(0) }, g);
    const label = svgEl("text", { x: cx, "text-anchor": "middle", class: "ift-value" }, g);
    const tick = svgEl("text", { x: cx, y: height - 6, "text-anchor": "middle", class: "ift-tick" }, g);
    tick.textContent = String(i + 1);
    const tip = svgEl("title", {}, g);
    bars.push({ g, rect, stub, label, tick, tip });
  }
  return { fig, note, svg, bars, y };
}

/** One Jacobian heatmap (title, SVG of n x n cells); returns the parts that change. */
function buildHeatmap(parent, title, ariaLabel, n) {
  const fig = htmlEl("figure", "ift-heat", parent);
  htmlEl("figcaption", "ift-chart-title", fig, title);
  const side = HEAT_PAD + n * CELL;
  const svg = svgEl("svg", {
    class: "ift-heatmap", viewBox: `0 0 ${side + 2} ${side + 2}`, width: side + 2, height: side + 2,
    role: "img", "aria-label": ariaLabel,
  }, fig);
  const labels = svgEl("g", { class: "ift-tick" }, svg);
  for (let k = 0; k < n; k += 1) {
    const c = HEAT_PAD + (k + 0.5) * CELL;
    svgEl("text", { x: c, y: HEAT_PAD - 6, "text-anchor": "middle" }, labels).textContent = `\u03b8${sub(k + 1)}`;
    svgEl("text", { x: HEAT_PAD - 5, y: c + 4, "text-anchor": "end" }, labels).textContent = String(k + 1);
  }
  const cells = [];
  for (let i = 0; i < n; i += 1) {
    const row = [];
    for (let j = 0; j < n; j += 1) {
      const g = svgEl("g", { class: "ift-cell" }, svg);
      const x = HEAT_PAD + j * CELL;
      const y = HEAT_PAD + i * CELL;
      const rect = svgEl("rect", { x: x + 0.5, y: y + 0.5, width: CELL - 1, height: CELL - 1 }, g);
      const text = svgEl("text", { x: x + CELL / 2, y: y + CELL / 2 + 3.5, "text-anchor": "middle" }, g);
      const tip = svgEl("title", {}, g);
      row.push({ g, rect, text, tip });
    }
    cells.push(row);
  }
  // A frame around the support block (sparsemax): drawn on top of the cells.
  const frame = svgEl("g", { class: "ift-support-frame" }, svg);
  return { fig, svg, cells, frame };
}

/** The shared colour scale (vertical bar, +max on top). */
function buildScale(parent) {
  const height = HEAT_PAD + 5 * CELL + 2;
  const svg = svgEl("svg", {
    class: "ift-scale", viewBox: `0 0 ${SCALE.width} ${height}`, width: SCALE.width, height,
    "aria-hidden": "true",
  }, parent);
  const defs = svgEl("defs", {}, svg);
  const id = `ift-softmax-scale-${Math.random().toString(36).slice(2)}`;
  const grad = svgEl("linearGradient", { id, x1: 0, y1: 0, x2: 0, y2: 1 }, defs);
  const stops = [0, 0.5, 1].map((o) => svgEl("stop", { offset: o }, grad));
  const top = HEAT_PAD;
  const bottom = height - 2;
  svgEl("rect", { x: 2, y: top, width: SCALE.barWidth, height: bottom - top, fill: `url(#${id})`, class: "ift-scale-bar" }, svg);
  const label = (y) => svgEl("text", { x: SCALE.barWidth + 6, y: y + 4, class: "ift-tick" }, svg);
  const labels = [label(top + 2), label((top + bottom) / 2), label(bottom - 4)];
  labels[1].textContent = "0";
  return { stops, labels };
}

/* ------------------------------------------------------------------ the widget */

function render({ model, el }) {
  const table0 = model.get("table");
  const n = table0.n || 5;
  const root = widgetRoot(el, "ift-softmax-widget");
  const setTrait = traitSetter(model);
  const controls = buildControls(root);
  const barRow = htmlEl("div", "ift-row ift-bar-row", root);
  const soft = buildBars(barRow, "softmax(\u03b8/T)", "Bar chart of softmax(\u03b8/T)", n);
  const sparse = buildBars(barRow, "sparsemax(\u03b8/T)", "Bar chart of sparsemax(\u03b8/T); grey: outside the support", n);
  const heatRow = htmlEl("div", "ift-row ift-heat-row", root);
  const jSoft = buildHeatmap(heatRow, "\u2202 softmax(\u03b8/T) / \u2202\u03b8", "Jacobian of softmax(\u03b8/T) with respect to \u03b8", n);
  const jSparse = buildHeatmap(heatRow, "\u2202 sparsemax(\u03b8/T) / \u2202\u03b8", "Jacobian of sparsemax(\u03b8/T) with respect to \u03b8", n);
  const scale = buildScale(htmlEl("div", "ift-scale-box", heatRow));
  const caption = htmlEl("p", "ift-caption", root);
  caption.innerHTML =
    "Jacobians with respect to \u03b8, including the factor 1/T (row i: output, column \u03b8<sub>j</sub>: "
    + "score; one colour scale for both; hover a cell for its value). "
    + "Softmax: <b>J = (diag(z) \u2212 z z<sup>\u22a4</sup>) / T</b> is dense: every score moves every output. "
    + "Sparsemax: <b>J = (diag(s) \u2212 s s<sup>\u22a4</sup> / |S|) / T</b>, with s the indicator of the "
    + "support S (green frame), is zero outside S, and all zero when |S| = 1.";
  const status = htmlEl("p", "ift-visually-hidden", root);
  status.setAttribute("role", "status");

  /** Colours from the palette trait, as CSS variables (used by softmax.css). */
  function applyPalette() {
    const p = model.get("palette");
    for (const [name, colour] of Object.entries(p)) root.style.setProperty(`--ift-${name}`, colour);
    draw();
  }

  /** New table: rebuild the preset buttons and the slider range, then redraw. */
  function applyTable() {
    const table = model.get("table");
    controls.presets.replaceChildren();
    controls.buttons = table.presets.map((preset, k) => {
      const b = htmlEl("button", "ift-preset", controls.presets, preset.label);
      b.type = "button";
      b.dataset.preset = preset.name;
      b.addEventListener("click", () => setTrait("preset", k));
      return b;
    });
    const ts = table.temperatures;
    controls.slider.max = ts.length - 1;
    controls.ends.textContent = `${fmtT(ts[0])} \u2026 ${fmtT(ts[ts.length - 1])} (log scale)`;
    draw();
  }

  function drawBars(chart, values, colour, support) {
    values.forEach((v, i) => {
      const b = chart.bars[i];
      const out = support && v === 0;
      const y0 = chart.y(0);
      const y1 = chart.y(Math.min(v, 1));
      b.rect.setAttribute("y", y1);
      b.rect.setAttribute("height", Math.max(y0 - y1, 0));
      b.rect.setAttribute("fill", colour);
      b.stub.style.display = out ? "" : "none";
      b.label.textContent = barLabel(v);
      b.label.setAttribute("y", Math.max(y1 - 4, 10));
      b.g.classList.toggle("ift-off", out);
      const name = support ? "sparsemax" : "softmax";
      b.tip.textContent = `${name}(\u03b8/T)${sub(i + 1)} = ${exact(v)}`
        + (out ? " (outside the support: \u03b8\u1d62/T \u2264 \u03c4)" : "");
    });
  }

  function drawHeatmap(map, jac, vmax, name, inSupport) {
    const p = model.get("palette");
    jac.forEach((row, i) => row.forEach((v, j) => {
      const c = map.cells[i][j];
      const w = vmax > 0 ? Math.abs(v) / vmax : 0;
      c.rect.setAttribute("fill", v === 0 ? "#ffffff" : tint(v > 0 ? p.tangent : p.point, w));
      c.text.textContent = cellLabel(v);
      c.g.classList.toggle("ift-strong", w > 0.55);
      c.g.classList.toggle("ift-zero", v === 0);
      c.tip.textContent = `\u2202 ${name}(\u03b8/T)${sub(i + 1)} / \u2202\u03b8${sub(j + 1)} = `
        + (v === 0 ? "0 (exactly)" : `${exact(v)} (4 significant digits)`);
    }));
    // Outline of the support block S x S (sparsemax only).
    map.frame.replaceChildren();
    if (inSupport) {
      inSupport.forEach((on, i) => inSupport.forEach((on2, j) => {
        if (!(on && on2)) return;
        const x = HEAT_PAD + j * CELL;
        const y = HEAT_PAD + i * CELL;
        const edges = [[!inSupport[i - 1], x, y, x + CELL, y], [!inSupport[i + 1], x, y + CELL, x + CELL, y + CELL],
                       [!inSupport[j - 1], x, y, x, y + CELL], [!inSupport[j + 1], x + CELL, y, x + CELL, y + CELL]];
        edges.forEach(([draw, x1, y1, x2, y2]) => draw && svgEl("line", { x1, y1, x2, y2 }, map.frame));
      }));
    }
  }

  /** Draw the current (preset, temperature): controls, bars, heatmaps, data attributes. */
  function draw() {
    const table = model.get("table");
    const p = model.get("palette");
    if (!table.presets || !table.presets.length || !p.curve) return;
    const pi = Math.min(Math.max(model.get("preset"), 0), table.presets.length - 1);
    const k = Math.min(Math.max(model.get("t_index"), 0), table.temperatures.length - 1);
    const preset = table.presets[pi];
    const t = table.temperatures[k];
    const z = preset.softmax[k];
    const s = preset.sparsemax[k];
    const tau = preset.tau[k];
    const size = preset.support_size[k];
    const inSupport = s.map((v) => v > 0);

    // Controls.
    controls.buttons.forEach((b, q) => {
      b.setAttribute("aria-pressed", String(q === pi));
      b.classList.toggle("ift-active", q === pi);
    });
    controls.theta.textContent = `= (${preset.theta.map((v) => fmt(v)).join(", ")})`;
    controls.value.textContent = `T = ${fmtT(t)}`;
    controls.slider.value = String(k);
    controls.slider.setAttribute("aria-valuetext", `T = ${fmtT(t)}`);

    // Bars.
    drawBars(soft, z, p.curve, null);
    drawBars(sparse, s, p.arc, inSupport);
    soft.note.textContent = `every z\u1d62 > 0`;
    const members = inSupport.map((on, i) => (on ? i + 1 : 0)).filter(Boolean).join(", ");
    sparse.note.textContent = `S = {${members}}, |S| = ${size} of ${n}, \u03c4 = ${fmt(tau, 3)}`;
    sparse.note.title = `threshold \u03c4 = ${exact(tau)}: sparsemax(\u03b8/T)\u1d62 = max(\u03b8\u1d62/T \u2212 \u03c4, 0)`;

    // Jacobians, one colour scale for both.
    const js = preset.jac_softmax[k];
    const jp = preset.jac_sparsemax[k];
    const vmax = Math.max(...js.flat().map(Math.abs), ...jp.flat().map(Math.abs), table.jac_scale_min || 0);
    drawHeatmap(jSoft, js, vmax, "softmax", null);
    drawHeatmap(jSparse, jp, vmax, "sparsemax", inSupport);
    scale.stops[0].setAttribute("stop-color", p.tangent);
    scale.stops[1].setAttribute("stop-color", "#ffffff");
    scale.stops[2].setAttribute("stop-color", p.point);
    scale.labels[0].textContent = `+${cellLabel(vmax)}`;
    scale.labels[2].textContent = cellLabel(-vmax);

    // Machine-readable state (full precision) and accessibility.
    root.dataset.preset = preset.name;
    root.dataset.tIndex = String(k);
    root.dataset.temperature = String(t);
    root.dataset.supportSize = String(size);
    root.dataset.tau = String(tau);
    root.dataset.softmax = z.map(String).join(",");
    root.dataset.sparsemax = s.map(String).join(",");
    status.textContent = `${preset.label}, T = ${fmtT(t)}: softmax (${z.map((v) => fmt(v)).join(", ")}); `
      + `sparsemax (${s.map((v) => fmt(v)).join(", ")}), support size ${size}.`;
  }


  controls.slider.addEventListener("input", () => setTrait("t_index", Number(controls.slider.value)));

  applyTable();
  applyPalette();
  return listen(model, { "change:preset": draw, "change:t_index": draw, "change:table": applyTable, "change:palette": applyPalette });
}

export default { render };
