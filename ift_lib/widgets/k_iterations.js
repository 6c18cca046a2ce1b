/**
 * k_iterations.js: front end of ift_lib.widgets.KIterationsWidget (Chapter 4, what unrolling costs).
 *
 * Python computes every number shown here (ift_lib.unrolled: gd_step, unrolled and implicit
 * hypergradients, closed forms, compiled_temp_bytes; see k_iterations.py) and stores it in the
 * widget model; this file only DRAWS and LOOKS UP. Model traits:
 *   table    {n, k_max, theta[n], step_size, step_is_default, x0[n], x_star[n], closed_form[n],
 *             k[G] (the K grid), per grid entry: x[G][n] (x_K), unrolled[G][n], ift[G][n]
 *             (hypergradients, full precision), rel_unrolled[G], rel_ift[G] (relative errors
 *             against closed_form), residual[G] (max |F(x_K)|), unrolled_bytes[G], ift_bytes[G],
 *             memory_measured[G] (else interpolated), err_floor,
 *             memory {n, k[], unrolled[], ift[]} (the measured values),
 *             view [[x1 lo, hi], [x2 lo, hi]], ticks [[x1 ticks], [x2 ticks]],
 *             path_x[k_max + 1], path_y[k_max + 1] (x_0 .. x_kmax, rounded for drawing),
 *             contours [[xs, ys], ...] (level sets of the inner objective)}
 *   k_index  the current grid entry (synced both ways with Python)
 *   palette  named colours (ift_lib.plotting.PALETTE)
 *
 * The root element (.ift-k-widget) carries data-k, data-k-index, data-unrolled-grad,
 * data-ift-grad, data-closed-grad (comma-separated, full precision), data-unrolled-bytes,
 * data-ift-bytes and data-bytes-measured, for tests and curious readers.
 */

const PLANE = { width: 292, height: 304, left: 34, top: 20, side: 250 };   // square plot area
const ERR = { width: 300, height: 176, left: 42, right: 12, top: 8, bottom: 30 };
const MEM = { width: 300, height: 64, label: 62, bar: 150, row: 26 };
const SUB = "\u2080\u2081\u2082\u2083\u2084\u2085\u2086\u2087\u2088\u2089";
const SUP = { "-": "\u207b", 0: "\u2070", 1: "\u00b9", 2: "\u00b2", 3: "\u00b3", 4: "\u2074",
  5: "\u2075", 6: "\u2076", 7: "\u2077", 8: "\u2078", 9: "\u2079" };

/* ------------------------------------------------------------------ helpers */

const sup = (n) => String(n).split("").map((c) => SUP[c]).join("");
const minus = (s) => s.replace(/-/g, "\u2212");

/** 4 significant digits as toPrecision, "a × 10ⁿ" for an exponent (same rule as _fmt_sig). */
function fmtSig(v, digits = 4) {
  if (v === 0) return "0";
  const s = v.toPrecision(digits);
  if (!s.includes("e")) return minus(s);
  const [m, e] = s.split("e");
  return minus(`${m} \u00d7 10${sup(Number(e))}`);
}

/** A relative error: 2 significant digits; "< 10⁻¹⁵" at rounding level (same as _fmt_err). */
function fmtErr(v) {
  if (v < 1e-15) return "< 10\u207b\u00b9\u2075";
  if (v >= 100) return String(Math.round(v));
  if (v >= 0.01) return v.toPrecision(2);
  const [m, e] = v.toExponential(1).split("e");
  return `${m} \u00d7 10${sup(Number(e))}`;
}

/** Bytes, 3 significant digits, decimal units (same rule as _fmt_bytes). */
function fmtBytes(n) {
  for (const [unit, size] of [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]]) {
    if (n >= size) return `${Number((n / size).toPrecision(3))} ${unit}`;
  }
  return `${Math.trunc(n)} B`;
}

/** A tick value of the plane: at most 3 decimals, typographic minus. */
const fmtTick = (v) => minus(String(Number(v.toFixed(3))));

/** 10^e as a tick label: "1", "10", "10⁻⁴". */
const decade = (e) => (e === 0 ? "1" : e === 1 ? "10" : `10${sup(e)}`);

/* ------------------------------------------------------------------ building the DOM */

function buildControls(root) {
  const row = htmlEl("label", "ift-slider-row", root);
  const name = htmlEl("span", "ift-row-label", row, "Gradient-descent steps ");
  const value = htmlEl("output", "ift-k-value", name);
  const slider = htmlEl("input", "ift-slider", row);
  slider.type = "range";
  slider.step = 1;
  slider.min = 0;
  const ends = htmlEl("span", "ift-slider-ends", row);
  return { value, slider, ends };
}

/** The (x1, x2) plane: frame, ticks, contours (static per table), path, dots, points. */
function buildPlane(parent) {
  const fig = htmlEl("figure", "ift-plane", parent);
  htmlEl("figcaption", "ift-chart-title", fig, "Inner problem: level sets of f(x, \u03b8)");
  const svg = svgEl("svg", {
    class: "ift-plane-svg", viewBox: `0 0 ${PLANE.width} ${PLANE.height}`,
    width: PLANE.width, height: PLANE.height, role: "img",
    "aria-label": "Level sets of the inner objective in the (x1, x2) plane, the gradient-descent "
      + "iterates x0 to xK and the solution x*",
  }, fig);
  const defs = svgEl("defs", {}, svg);
  const clipId = `ift-k-clip-${Math.random().toString(36).slice(2)}`;
  svgEl("rect", { x: PLANE.left, y: PLANE.top, width: PLANE.side, height: PLANE.side },
    svgEl("clipPath", { id: clipId }, defs));
  const axes = svgEl("g", { class: "ift-axes" }, svg);
  const contours = svgEl("g", { class: "ift-contours", "clip-path": `url(#${clipId})` }, svg);
  const drawn = svgEl("g", { "clip-path": `url(#${clipId})` }, svg);
  const path = svgEl("polyline", { class: "ift-path" }, drawn);
  const dots = svgEl("path", { class: "ift-dots" }, drawn);   // one round dot per iterate
  const start = svgEl("circle", { class: "ift-start", r: 4.5 }, drawn);
  const star = svgEl("path", { class: "ift-star" }, drawn);
  const current = svgEl("circle", { class: "ift-current", r: 6.5 }, drawn);
  const currentTip = svgEl("title", {}, current);
  const labels = svgEl("g", { class: "ift-point-labels" }, svg);
  const startLabel = svgEl("text", { class: "ift-point-label" }, labels);
  const starLabel = svgEl("text", { class: "ift-point-label ift-star-label" }, labels);
  const legend = htmlEl("ul", "ift-legend", fig);
  legend.innerHTML =
    '<li><span class="ift-mark ift-mark-current"></span>x<sub>K</sub> after K steps</li>'
    + '<li><span class="ift-mark ift-mark-path"></span>x<sub>0</sub>, x<sub>1</sub>, \u2026, x<sub>K</sub></li>'
    + '<li><span class="ift-mark ift-mark-star">\u2605</span>x* (K \u2192 \u221e)</li>';
  return { svg, axes, contours, path, dots, start, star, current, currentTip, startLabel, starLabel };
}

/** Relative error of both hypergradients against the closed form, log-log. */
function buildErrors(parent) {
  const fig = htmlEl("figure", "ift-errors", parent);
  htmlEl("figcaption", "ift-chart-title", fig, "Relative error vs the closed form");
  const svg = svgEl("svg", {
    class: "ift-err-svg", viewBox: `0 0 ${ERR.width} ${ERR.height}`, width: ERR.width,
    height: ERR.height, role: "img",
    "aria-label": "Relative error of the unrolled and of the IFT hypergradient against K, log-log",
  }, fig);
  const axes = svgEl("g", { class: "ift-axes" }, svg);
  const unrolled = svgEl("polyline", { class: "ift-err-line ift-unrolled" }, svg);
  const ift = svgEl("polyline", { class: "ift-err-line ift-ift" }, svg);
  const marker = svgEl("line", { class: "ift-k-marker" }, svg);
  const dotU = svgEl("circle", { class: "ift-err-dot ift-unrolled", r: 4 }, svg);
  const dotI = svgEl("circle", { class: "ift-err-dot ift-ift", r: 4 }, svg);
  const legend = htmlEl("ul", "ift-legend ift-legend-row", fig);
  legend.innerHTML =
    '<li><span class="ift-swatch ift-swatch-unrolled"></span>unrolled</li>'
    + '<li><span class="ift-swatch ift-swatch-ift"></span>IFT at x<sub>K</sub></li>';
  return { svg, axes, unrolled, ift, marker, dotU, dotI };
}

/** Two horizontal bars: memory of the unrolled and of the IFT hypergradient. */
function buildMemory(parent) {
  const fig = htmlEl("figure", "ift-memory", parent);
  const title = htmlEl("figcaption", "ift-chart-title", fig);
  const svg = svgEl("svg", {
    class: "ift-mem-svg", viewBox: `0 0 ${MEM.width} ${MEM.height}`, width: MEM.width,
    height: MEM.height, role: "img", "aria-label": "Memory of one hypergradient, unrolled and IFT",
  }, fig);
  const rows = ["unrolled", "IFT (CG)"].map((name, i) => {
    const y = 8 + i * MEM.row;
    const g = svgEl("g", { class: `ift-mem-row ${i === 0 ? "ift-unrolled" : "ift-ift"}` }, svg);
    svgEl("text", { x: MEM.label, y: y + 13, "text-anchor": "end", class: "ift-tick" }, g).textContent = name;
    svgEl("rect", { class: "ift-mem-track", x: MEM.label + 6, y, width: MEM.bar, height: 18, rx: 2 }, g);
    const bar = svgEl("rect", { class: "ift-mem-bar", x: MEM.label + 6, y, width: 0, height: 18, rx: 2 }, g);
    const value = svgEl("text", { class: "ift-mem-value", x: MEM.label + 12 + MEM.bar, y: y + 13 }, g);
    const tip = svgEl("title", {}, g);
    return { bar, value, tip };
  });
  return { title, svg, rows };
}

function buildReadout(root) {
  const table = htmlEl("table", "ift-readout", root);
  table.innerHTML =
    "<thead><tr><th></th><th>\u2202L/\u2202\u03b8<sub>1</sub></th><th>\u2202L/\u2202\u03b8<sub>2</sub></th>"
    + "<th>rel. error</th></tr></thead>"
    + '<tbody><tr class="ift-row-unrolled"><th><span class="ift-swatch ift-swatch-unrolled"></span>'
    + "unrolled through K steps</th><td></td><td></td><td></td></tr>"
    + '<tr class="ift-row-ift"><th><span class="ift-swatch ift-swatch-ift"></span>'
    + "IFT at x<sub>K</sub></th><td></td><td></td><td></td></tr>"
    + '<tr class="ift-row-closed"><th><span class="ift-swatch ift-swatch-closed"></span>'
    + "closed form at x*</th><td></td><td></td><td>\u2014</td></tr></tbody>";
  const cells = (cls) => [...table.querySelectorAll(`.${cls} td`)];
  const state = htmlEl("p", "ift-state", root);
  return { unrolled: cells("ift-row-unrolled"), ift: cells("ift-row-ift"), closed: cells("ift-row-closed"), state };
}

/* ------------------------------------------------------------------ the widget */

function render({ model, el }) {
  const root = widgetRoot(el, "ift-k-widget");
  const setTrait = traitSetter(model);
  const controls = buildControls(root);
  const row = htmlEl("div", "ift-row", root);
  const plane = buildPlane(row);
  const side = htmlEl("div", "ift-side", row);
  const errors = buildErrors(side);
  const memory = buildMemory(side);
  const readout = buildReadout(root);
  const caption = htmlEl("p", "ift-caption", root);
  const status = htmlEl("p", "ift-visually-hidden", root);
  status.setAttribute("role", "status");

  let geo = null;   // projections of the current table (rebuilt by applyTable)

  /** Colours from the palette trait, as CSS variables (used by k_iterations.css). */
  function applyPalette() {
    for (const [name, colour] of Object.entries(model.get("palette"))) root.style.setProperty(`--ift-${name}`, colour);
  }

  /** New table: axes, contours, error curves, slider range and caption; then draw. */
  function applyTable() {
    const t = model.get("table");
    if (!t.k || !t.k.length) return;
    const [[x0, x1], [y0, y1]] = t.view;
    const px = (x) => PLANE.left + ((x - x0) / (x1 - x0)) * PLANE.side;
    const py = (y) => PLANE.top + ((y1 - y) / (y1 - y0)) * PLANE.side;
    const kMax = t.k[t.k.length - 1];
    const top = Math.max(1, Math.ceil(Math.log10(Math.max(...t.rel_unrolled, ...t.rel_ift))));
    const bottom = Math.log10(t.err_floor);
    const ew = ERR.width - ERR.left - ERR.right;
    const eh = ERR.height - ERR.top - ERR.bottom;
    const ex = (k) => ERR.left + (Math.log10(k) / Math.log10(kMax)) * ew;
    const ey = (r) => ERR.top + ((top - Math.log10(Math.max(r, t.err_floor))) / (top - bottom)) * eh;
    const path = t.path_x.map((x, i) => `${px(x).toFixed(1)},${py(t.path_y[i]).toFixed(1)}`);
    const dots = path.map((p) => `M${p}h0`);   // zero-length segments with round caps
    geo = { px, py, ex, ey, path, dots };

    // The plane: frame, ticks, axis names, level sets, x0 and x*.
    const a = plane.axes;
    a.replaceChildren();
    const right = PLANE.left + PLANE.side;
    const bottomY = PLANE.top + PLANE.side;
    svgEl("rect", { class: "ift-frame", x: PLANE.left, y: PLANE.top, width: PLANE.side, height: PLANE.side }, a);
    t.ticks[0].forEach((v) => {
      svgEl("line", { class: "ift-tickmark", x1: px(v), x2: px(v), y1: bottomY, y2: bottomY + 4 }, a);
      svgEl("text", { class: "ift-tick", x: px(v), y: bottomY + 16, "text-anchor": "middle" }, a).textContent = fmtTick(v);
    });
    t.ticks[1].forEach((v) => {
      svgEl("line", { class: "ift-tickmark", x1: PLANE.left - 4, x2: PLANE.left, y1: py(v), y2: py(v) }, a);
      svgEl("text", { class: "ift-tick", x: PLANE.left - 7, y: py(v) + 4, "text-anchor": "end" }, a).textContent = fmtTick(v);
    });
    svgEl("text", { class: "ift-axis-name", x: right - 2, y: bottomY + 30, "text-anchor": "end" }, a).textContent = "x\u2081";
    svgEl("text", { class: "ift-axis-name", x: PLANE.left - 7, y: PLANE.top - 7, "text-anchor": "end" }, a).textContent = "x\u2082";
    plane.contours.replaceChildren();
    t.contours.forEach(([xs, ys]) => {
      svgEl("polyline", { points: xs.map((x, i) => `${px(x).toFixed(1)},${py(ys[i]).toFixed(1)}`).join(" ") }, plane.contours);
    });
    const [sx, sy] = [px(t.x0[0]), py(t.x0[1])];
    plane.start.setAttribute("cx", sx);
    plane.start.setAttribute("cy", sy);
    plane.startLabel.setAttribute("x", sx + 9);
    plane.startLabel.setAttribute("y", sy + 4);
    plane.startLabel.textContent = `x\u2080 = (${t.x0.map(fmtTick).join(", ")})`;
    const [cx, cy] = [px(t.x_star[0]), py(t.x_star[1])];
    const star = [];
    for (let i = 0; i < 10; i += 1) {
      const r = i % 2 ? 3.6 : 8.5;
      const ang = -Math.PI / 2 + (i * Math.PI) / 5;
      star.push(`${(cx + r * Math.cos(ang)).toFixed(1)},${(cy + r * Math.sin(ang)).toFixed(1)}`);
    }
    plane.star.setAttribute("d", `M${star.join("L")}Z`);
    plane.starLabel.setAttribute("x", cx + 9);
    plane.starLabel.setAttribute("y", cy - 8);
    plane.starLabel.textContent = "x*";

    // The error plot: decades, K ticks, both curves over the whole grid.
    const e = errors.axes;
    e.replaceChildren();
    for (let d = top; d >= bottom; d -= 1) {
      const y = ey(10 ** d);
      const major = d % 4 === 0;
      svgEl("line", { class: major ? "ift-gridline" : "ift-gridline ift-minor", x1: ERR.left, x2: ERR.left + ew, y1: y, y2: y }, e);
      if (major) svgEl("text", { class: "ift-tick", x: ERR.left - 5, y: y + 4, "text-anchor": "end" }, e).textContent = decade(d);
    }
    for (let d = 0; 10 ** d <= kMax; d += 1) {
      const x = ex(10 ** d);
      svgEl("line", { class: "ift-gridline ift-minor", x1: x, x2: x, y1: ERR.top, y2: ERR.top + eh }, e);
      svgEl("text", { class: "ift-tick", x, y: ERR.top + eh + 14, "text-anchor": "middle" }, e).textContent = String(10 ** d);
    }
    svgEl("line", { class: "ift-baseline", x1: ERR.left, x2: ERR.left + ew, y1: ERR.top + eh, y2: ERR.top + eh }, e);
    svgEl("text", { class: "ift-axis-name", x: ERR.left + ew, y: ERR.top + eh + 27, "text-anchor": "end" }, e).textContent = "K (log scale)";
    errors.unrolled.setAttribute("points", t.k.map((k, i) => `${ex(k).toFixed(1)},${ey(t.rel_unrolled[i]).toFixed(1)}`).join(" "));
    errors.ift.setAttribute("points", t.k.map((k, i) => `${ex(k).toFixed(1)},${ey(t.rel_ift[i]).toFixed(1)}`).join(" "));
    errors.marker.setAttribute("y1", ERR.top);
    errors.marker.setAttribute("y2", ERR.top + eh);

    // Memory: one scale for the whole slider (the largest value).
    geo.memMax = Math.max(...t.unrolled_bytes, ...t.ift_bytes);
    const m = t.memory;
    memory.title.textContent = `Memory of one hypergradient, n = ${m.n}`;
    memory.measuredAt = m.k.join(", ");

    // Slider and caption.
    controls.slider.max = t.k.length - 1;
    controls.ends.textContent = `1 \u2026 ${kMax}`;
    const lambdas = t.theta.map((v) => Number(Math.exp(v).toPrecision(3))).join(", ");
    const step = t.step_is_default ? "step 1/L" : `step ${fmtSig(t.step_size, 3)}`;
    caption.innerHTML =
      `<b>Inner problem</b>: f(x, \u03b8) = |Ax \u2212 b|\u00b2/2m + \u00bd\u2211 e<sup>\u03b8<sub>j</sub></sup>x<sub>j</sub>\u00b2 `
      + `with two correlated features and weight decays e<sup>\u03b8</sup> = (${lambdas}); K steps of gradient descent `
      + `from x<sub>0</sub> (${step}). <b>Unrolled</b>: reverse mode through the K steps, exact for x<sub>K</sub>(\u03b8). `
      + "<b>IFT at x<sub>K</sub></b>: the implicit formula, which assumes F(x<sub>K</sub>, \u03b8) = 0, applied anyway. "
      + `<b>Memory</b>: XLA's scratch bytes of the compiled gradient (float64), measured on a companion problem `
      + `with n = ${m.n} features (at 2 features every size is tiny) at K = ${m.k.join(", ")}; \u2248: linear in K `
      + "in between. Unrolling stores every iterate (\u2248 8nK bytes); the IFT gradient (CG solve) stores none.";
    draw();
  }

  /** Draw the current K: path, points, markers, bars, readout, data attributes. */
  function draw() {
    const t = model.get("table");
    if (!geo || !t.k || !t.k.length) return;
    const i = Math.min(Math.max(model.get("k_index"), 0), t.k.length - 1);
    const K = t.k[i];
    const x = t.x[i];
    const gu = t.unrolled[i];
    const gi = t.ift[i];
    const g = t.closed_form;
    const ub = t.unrolled_bytes[i];
    const ib = t.ift_bytes[i];
    const measured = t.memory_measured[i];

    // Controls.
    controls.value.textContent = `K = ${K}`;
    controls.slider.value = String(i);
    controls.slider.setAttribute("aria-valuetext", `K = ${K}`);

    // Plane.
    plane.path.setAttribute("points", geo.path.slice(0, K + 1).join(" "));
    plane.dots.setAttribute("d", geo.dots.slice(1, K + 1).join(""));
    plane.current.setAttribute("cx", geo.px(x[0]));
    plane.current.setAttribute("cy", geo.py(x[1]));
    plane.currentTip.textContent = `x${String(K).split("").map((d) => SUB[Number(d)]).join("")} = (${x.map((v) => fmtSig(v)).join(", ")})`;

    // Errors.
    const mx = geo.ex(K);
    errors.marker.setAttribute("x1", mx);
    errors.marker.setAttribute("x2", mx);
    [[errors.dotU, t.rel_unrolled[i]], [errors.dotI, t.rel_ift[i]]].forEach(([dot, r]) => {
      dot.setAttribute("cx", mx);
      dot.setAttribute("cy", geo.ey(r));
    });

    // Memory.
    const approx = measured ? "" : "\u2248 ";
    [[memory.rows[0], ub, "unrolled"], [memory.rows[1], ib, "IFT (CG)"]].forEach(([r, b, name]) => {
      r.bar.setAttribute("width", Math.max((b / geo.memMax) * MEM.bar, 1.5));
      r.value.textContent = approx + fmtBytes(b);
      r.tip.textContent = `${name}: ${b} bytes at K = ${K} (${measured ? "measured" : "linear interpolation"}; `
        + `measured at K = ${memory.measuredAt})`;
    });

    // Readout.
    readout.unrolled[0].textContent = fmtSig(gu[0]);
    readout.unrolled[1].textContent = fmtSig(gu[1]);
    readout.unrolled[2].textContent = fmtErr(t.rel_unrolled[i]);
    readout.ift[0].textContent = fmtSig(gi[0]);
    readout.ift[1].textContent = fmtSig(gi[1]);
    readout.ift[2].textContent = fmtErr(t.rel_ift[i]);
    readout.closed[0].textContent = fmtSig(g[0]);
    readout.closed[1].textContent = fmtSig(g[1]);
    readout.state.innerHTML =
      `x<sub>K</sub> = (${x.map((v) => fmtSig(v)).join(", ")}), x* = (${t.x_star.map((v) => fmtSig(v)).join(", ")}); `
      + `max |F(x<sub>K</sub>, \u03b8)| = ${fmtSig(t.residual[i], 2)} (the IFT assumes 0)`;

    // Machine-readable state (full precision) and accessibility.
    const d = root.dataset;
    d.k = String(K);
    d.kIndex = String(i);
    d.unrolledGrad = gu.map(String).join(",");
    d.iftGrad = gi.map(String).join(",");
    d.closedGrad = g.map(String).join(",");
    d.unrolledBytes = String(ub);
    d.iftBytes = String(ib);
    d.bytesMeasured = String(measured);
    status.textContent = `K = ${K}: relative error unrolled ${fmtErr(t.rel_unrolled[i])}, IFT at xK `
      + `${fmtErr(t.rel_ift[i])}; memory unrolled ${approx}${fmtBytes(ub)}, IFT ${approx}${fmtBytes(ib)}.`;
  }


  controls.slider.addEventListener("input", () => setTrait("k_index", Number(controls.slider.value)));

  applyPalette();
  applyTable();
  return listen(model, { "change:k_index": draw, "change:table": applyTable, "change:palette": applyPalette });
}

export default { render };
