/**
 * circle.js: front end of ift_lib.widgets.CircleWidget (Chapter 1, the unit circle).
 *
 * Python computes every number shown here (ift_lib.circle.circle_table) and stores it in
 * the widget model; this file only DRAWS and LOOKS UP. Model traits:
 *   table    {theta[], x[], dF_dtheta[], dF_dx[], applies[], dx_dtheta[], arc_theta[][], arc_x[][]}
 *            one entry per sample, samples in order of increasing angle
 *   index    the current sample (synced both ways with Python)
 *   palette  named colours (ift_lib.plotting.PALETTE)
 *
 * The root element (.ift-circle-widget) carries data-theta, data-x and data-dxdtheta at full
 * precision (data-dxdtheta is "" where the IFT does not apply), for tests and curious readers.
 */

const SIZE = 320;           // side of the square drawing, SVG user units (~ CSS px)
const RANGE = 1.45;         // math units visible either side of the origin
const TANGENT_HALF = 0.9;   // half-length of the drawn tangent segment, math units
const HANDLE_R = 9;         // radius of the draggable point, user units
const MIN_RADIUS = 0.1;     // pointer closer than this to the origin: angle too unstable, ignore

/* ------------------------------------------------------------------ helpers */

/** Math coordinates (theta right, x up) -> SVG user coordinates. */
const toSvg = (t, x) => [((t + RANGE) / (2 * RANGE)) * SIZE, ((RANGE - x) / (2 * RANGE)) * SIZE];

/** SVG user coordinates -> math coordinates. */
const fromSvg = (u, v) => [(u / SIZE) * 2 * RANGE - RANGE, RANGE - (v / SIZE) * 2 * RANGE];

/** 4 decimals, typographic minus, never "-0.0000" (same rule as _fmt in circle.py). */
function fmt(v) {
  let s = v.toFixed(4);
  if (Number(s) === 0) s = s.replace("-", "");
  return s.replace("-", "\u2212");
}

/** Index of the sample whose angle is nearest to `angle` (distance measured around the circle). */
function nearestSample(angles, angle) {
  let best = 0;
  let bestDist = Infinity;
  angles.forEach((a, k) => {
    const d = Math.abs(Math.atan2(Math.sin(angle - a), Math.cos(angle - a)));
    if (d < bestDist) { best = k; bestDist = d; }
  });
  return best;
}

/* ------------------------------------------------------------------ building the DOM */

/** The static parts of the drawing: axes, ticks, circle; returns the parts that change. */
function buildPlot(parent) {
  const plot = svgEl("svg", {
    class: "ift-plot", viewBox: `0 0 ${SIZE} ${SIZE}`, width: SIZE, height: SIZE,
    role: "img", "aria-label": "The unit circle with the current point, its tangent and the local arc",
  }, parent);
  const [o0, o1] = toSvg(0, 0);
  const [left, bottom] = toSvg(-RANGE + 0.05, -RANGE + 0.05);
  const [right, top] = toSvg(RANGE - 0.05, RANGE - 0.05);
  const axes = svgEl("g", { class: "ift-axes" }, plot);
  svgEl("line", { x1: left, y1: o1, x2: right, y2: o1 }, axes);   // theta axis
  svgEl("line", { x1: o0, y1: bottom, x2: o0, y2: top }, axes);   // x axis
  const tick = (t0, x0, t1, x1) => {
    const [u0, v0] = toSvg(t0, x0);
    const [u1, v1] = toSvg(t1, x1);
    svgEl("line", { x1: u0, y1: v0, x2: u1, y2: v1 }, axes);
  };
  [-1, 1].forEach((c) => { tick(c, -0.04, c, 0.04); tick(-0.04, c, 0.04, c); });
  const labels = svgEl("g", { class: "ift-labels" }, plot);
  const label = (t, x, text, anchor) => {
    const [u, v] = toSvg(t, x);
    svgEl("text", { x: u, y: v, "text-anchor": anchor }, labels).textContent = text;
  };
  // Axis names at the ends, tick labels just outside the circle so the curve never crosses them.
  label(RANGE - 0.08, 0.07, "\u03b8", "end");
  label(0.07, RANGE - 0.14, "x", "start");
  label(1.12, -0.17, "1", "start");
  label(-1.12, -0.17, "\u22121", "end");
  label(-0.08, 1.08, "1", "end");
  label(-0.08, -1.2, "\u22121", "end");

  const radius = SIZE / (2 * RANGE);
  const curve = svgEl("circle", { class: "ift-curve", cx: o0, cy: o1, r: radius }, plot);
  // A wide invisible ring on the circle: grabbing it anywhere jumps the point there.
  const track = svgEl("circle", { class: "ift-track", cx: o0, cy: o1, r: radius }, plot);
  const arc = svgEl("polyline", { class: "ift-arc", points: "" }, plot);
  const tangent = svgEl("line", { class: "ift-tangent" }, plot);
  const handle = svgEl("circle", {
    class: "ift-handle", r: HANDLE_R, tabindex: 0, role: "slider",
    "aria-label": "Point on the circle (arrow keys move it)", "aria-valuemin": 0,
  }, plot);
  return { plot, axes, labels, curve, track, arc, tangent, handle };
}

/** The readout panel; returns the cells that change. */
function buildPanel(parent) {
  const panel = htmlEl("div", "ift-panel", parent);
  htmlEl("div", "ift-title", panel, "F(\u03b8, x) = \u03b8\u00b2 + x\u00b2 \u2212 1 = 0");
  const readout = htmlEl("table", "ift-readout", panel);
  const row = (label) => {
    const tr = htmlEl("tr", "", readout);
    htmlEl("th", "", tr, label);
    return htmlEl("td", "", tr);
  };
  const cells = {
    theta: row("\u03b8"), x: row("x"),
    dF_dtheta: row("\u2202F/\u2202\u03b8"), dF_dx: row("\u2202F/\u2202x"),
    dx_dtheta: row("dx/d\u03b8"),
  };
  const note = htmlEl("p", "ift-note", panel);
  note.setAttribute("role", "status");
  const legend = htmlEl("ul", "ift-legend", panel);
  const key = (cls, text) => {
    const li = htmlEl("li", "", legend);
    htmlEl("span", `ift-swatch ${cls}`, li);
    li.appendChild(document.createTextNode(text));
    return li;
  };
  const keys = { tangent: key("ift-swatch-tangent", "tangent, slope dx/d\u03b8"),
                 arc: key("ift-swatch-arc", "local parameterization x(\u03b8)") };
  htmlEl("p", "ift-hint", panel,
    "Drag the point around the circle, or focus it and use the arrow keys (Shift: 10 steps).");
  return { panel, cells, note, keys };
}

/* ------------------------------------------------------------------ the widget */

function render({ model, el }) {
  const root = widgetRoot(el, "ift-circle-widget");
  const parts = buildPlot(root);
  const panel = buildPanel(root);
  let angles = [];        // angle of each sample, for snapping the pointer
  let dragging = null;    // pointerId of an ongoing drag

  /** Colours from the palette trait (SVG attributes and CSS variables for the panel). */
  function applyPalette() {
    const p = model.get("palette");
    for (const [name, colour] of Object.entries(p)) root.style.setProperty(`--ift-${name}`, colour);
    parts.axes.setAttribute("stroke", p.muted);
    parts.labels.setAttribute("fill", p.muted);
    parts.curve.setAttribute("stroke", p.curve);
    parts.arc.setAttribute("stroke", p.arc);
    parts.handle.setAttribute("fill", p.point);
    draw();
  }

  /** New table: recompute the sample angles, then redraw. */
  function applyTable() {
    const table = model.get("table");
    angles = table.theta.map((t, k) => Math.atan2(table.x[k], t));
    parts.handle.setAttribute("aria-valuemax", Math.max(table.theta.length - 1, 0));
    draw();
  }

  /** Draw the current sample: point, tangent, arc, readout, data attributes. */
  function draw() {
    const table = model.get("table");
    const p = model.get("palette");
    const n = table.theta ? table.theta.length : 0;
    if (!n) return;
    const i = ((model.get("index") % n) + n) % n;
    const t = table.theta[i];
    const x = table.x[i];
    const ok = table.applies[i];
    const slope = table.dx_dtheta[i];

    // The point.
    const [u, v] = toSvg(t, x);
    parts.handle.setAttribute("cx", u);
    parts.handle.setAttribute("cy", v);

    // The tangent: direction (1, slope) where the IFT applies, vertical where it does not.
    const dt = ok ? TANGENT_HALF / Math.hypot(1, slope) : 0;
    const dx = ok ? slope * dt : TANGENT_HALF;
    const [u1, v1] = toSvg(t - dt, x - dx);
    const [u2, v2] = toSvg(t + dt, x + dx);
    Object.entries({ x1: u1, y1: v1, x2: u2, y2: v2, stroke: ok ? p.tangent : p.warn })
      .forEach(([k, val]) => parts.tangent.setAttribute(k, val));
    parts.tangent.classList.toggle("ift-vertical", !ok);

    // The local parameterization x(theta) near the point (empty where there is none).
    const arcT = table.arc_theta[i] || [];
    const arcX = table.arc_x[i] || [];
    parts.arc.setAttribute("points", arcT.map((a, k) => toSvg(a, arcX[k]).join(",")).join(" "));

    // The readout.
    const c = panel.cells;
    c.theta.textContent = fmt(t);
    c.x.textContent = fmt(x);
    c.dF_dtheta.textContent = fmt(table.dF_dtheta[i]);
    c.dF_dx.textContent = fmt(table.dF_dx[i]);
    c.dx_dtheta.textContent = ok ? fmt(slope) : "not defined";
    panel.note.textContent = ok
      ? "dx/d\u03b8 = \u2212(\u2202F/\u2202\u03b8) / (\u2202F/\u2202x), from the implicit function theorem."
      : "\u2202F/\u2202x = 0 here, so the implicit function theorem does not apply: the circle is "
        + "vertical at this point and no function x(\u03b8) describes it nearby.";
    panel.keys.arc.hidden = !ok;
    root.classList.toggle("ift-no-ift", !ok);

    // Machine-readable state (full precision) and accessibility.
    root.dataset.index = String(i);
    root.dataset.theta = String(t);
    root.dataset.x = String(x);
    root.dataset.dxdtheta = ok ? String(slope) : "";
    parts.handle.setAttribute("aria-valuenow", i);
    parts.handle.setAttribute("aria-valuetext",
      `\u03b8 = ${fmt(t)}, x = ${fmt(x)}, ` + (ok ? `dx/d\u03b8 = ${fmt(slope)}` : "IFT does not apply"));
  }

  /** Move to sample i (wrapping around) and tell the kernel, if there is one. */
  function setIndex(i) {
    const n = angles.length;
    const k = ((i % n) + n) % n;
    if (k === model.get("index")) return;
    model.set("index", k);
    model.save_changes();
  }

  /** Snap the point to the sample nearest (by angle) to the pointer. */
  function moveToPointer(ev) {
    const pt = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(parts.plot.getScreenCTM().inverse());
    const [t, x] = fromSvg(pt.x, pt.y);
    if (Math.hypot(t, x) < MIN_RADIUS) return;
    setIndex(nearestSample(angles, Math.atan2(x, t)));
  }

  // Pointer: press on the point (or the ring), drag; capture keeps the drag when leaving the SVG.
  parts.plot.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || (ev.target !== parts.handle && ev.target !== parts.track)) return;
    ev.preventDefault();
    ev.target.setPointerCapture(ev.pointerId);
    dragging = ev.pointerId;
    root.classList.add("ift-dragging");
    parts.handle.focus({ preventScroll: true });
    moveToPointer(ev);
  });
  parts.plot.addEventListener("pointermove", (ev) => {
    if (ev.pointerId === dragging) moveToPointer(ev);
  });
  const endDrag = (ev) => {
    if (ev.pointerId !== dragging) return;
    dragging = null;
    root.classList.remove("ift-dragging");
  };
  ["pointerup", "pointercancel", "lostpointercapture"].forEach((type) =>
    parts.plot.addEventListener(type, endDrag));

  // Keyboard: arrows step to the neighbouring sample (up/right: counterclockwise).
  parts.handle.addEventListener("keydown", (ev) => {
    const steps = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1 }[ev.key];
    if (steps === undefined) return;
    ev.preventDefault();
    setIndex(model.get("index") + steps * (ev.shiftKey ? 10 : 1));
  });

  applyTable();
  applyPalette();
  return listen(model, { "change:index": draw, "change:table": applyTable, "change:palette": applyPalette });
}

export default { render };
