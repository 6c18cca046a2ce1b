/**
 * Shared by every ift_lib widget: ift_lib.widgets._base.bundle() puts this file in front of each
 * widget's own module (circle.js, softmax.js, k_iterations.js), so the helpers below are defined
 * once. It must not import or export anything.
 */
const SVG_NS = "http://www.w3.org/2000/svg";

/** Create an SVG element with attributes, appended to parent. */
function svgEl(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  parent.appendChild(node);
  return node;
}

/** Create an HTML element with a class (and optional text), appended to parent. */
function htmlEl(tag, className, parent, text = "") {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  parent.appendChild(node);
  return node;
}

/** The widget's root: a div with the shared class "ift-widget" and the widget's own class. */
const widgetRoot = (el, className) => htmlEl("div", `ift-widget ${className}`, el);

/** A setter of a synced trait that also tells the kernel, if there is one (no-op if unchanged). */
function traitSetter(model) {
  return (name, value) => {
    if (value === model.get(name)) return;
    model.set(name, value);
    model.save_changes();
  };
}

/** Subscribe {"change:name": handler, ...} to the model; returns the cleanup anywidget calls. */
function listen(model, handlers) {
  for (const [event, handler] of Object.entries(handlers)) model.on(event, handler);
  return () => {
    for (const [event, handler] of Object.entries(handlers)) model.off(event, handler);
  };
}
