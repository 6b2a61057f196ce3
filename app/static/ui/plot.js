// Pictures drawn in the page on a <canvas>: loss curves and a scatter of points. No library: a few lines of 2-D
// canvas each. The canvas is drawn at a fixed size times the screen's pixel ratio and scaled by CSS to its box.

export const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];
const FONT = "12px system-ui, sans-serif";

function canvas(width, height) {
  const ratio = window.devicePixelRatio || 1;
  const el = document.createElement("canvas");
  el.width = Math.round(width * ratio);
  el.height = Math.round(height * ratio);
  const ctx = el.getContext("2d");
  ctx.scale(ratio, ratio);
  return { el, ctx };
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

function ticks(lo, hi, count) {
  const step = 10 ** Math.floor(Math.log10((hi - lo) / count));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= count) || step * 10;
  const out = [];
  for (let t = Math.ceil(lo / nice) * nice; t <= hi; t += nice) out.push(+t.toPrecision(12));
  return out;
}

/**
 * Lines over a shared x axis: `x` the steps, `series` {name: [y|null, ...]} (nulls leave gaps). Returns the canvas;
 * the legend is the caller's (`legend`), in HTML, so it wraps on a narrow screen.
 */
export function lineChart(x, series, { width = 640, height = 220, xLabel = "step" } = {}) {
  const { el, ctx } = canvas(width, height);
  el.className = "chart";
  const names = Object.keys(series);
  const m = { left: 52, right: 12, top: 10, bottom: 32 };
  const [x0, x1] = x.length ? [Math.min(...x), Math.max(...x, Math.min(...x) + 1)] : [0, 1];
  const [y0, y1] = extent(names.flatMap((n) => series[n]));
  const px = (v) => m.left + ((v - x0) / (x1 - x0)) * (width - m.left - m.right);
  const py = (v) => height - m.bottom - ((v - y0) / (y1 - y0)) * (height - m.top - m.bottom);

  ctx.font = FONT;
  ctx.fillStyle = "#6b7280";
  ctx.strokeStyle = "#e5e7eb";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of ticks(y0, y1, 5)) {
    ctx.beginPath();
    ctx.moveTo(m.left, py(t));
    ctx.lineTo(width - m.right, py(t));
    ctx.stroke();
    ctx.fillText(String(+t.toPrecision(4)), m.left - 6, py(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of ticks(x0, x1, 6)) ctx.fillText(String(t), px(t), height - m.bottom + 6);
  ctx.fillText(xLabel, m.left + (width - m.left - m.right) / 2, height - 14);
  ctx.strokeStyle = "#9ca3af";
  ctx.strokeRect(m.left, m.top, width - m.left - m.right, height - m.top - m.bottom);

  names.forEach((name, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    series[name].forEach((y, j) => {
      if (y === null || !Number.isFinite(y)) {
        drawing = false;
        return;
      }
      if (drawing) ctx.lineTo(px(x[j]), py(y));
      else ctx.moveTo(px(x[j]), py(y));
      drawing = true;
    });
    ctx.stroke();
  });
  if (!x.length) {
    ctx.fillStyle = "#6b7280";
    ctx.textBaseline = "middle";
    ctx.fillText("no points yet", width / 2, height / 2);
  }
  return el;
}

/** Points [[x, y], ...] with optional class indices (a color each); framed by the points themselves. */
export function scatter(points, labels = null, { size = 160 } = {}) {
  const { el, ctx } = canvas(size, size);
  el.className = "thumb";
  const [x0, x1] = extent(points.map((p) => p[0]));
  const [y0, y1] = extent(points.map((p) => p[1]));
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  points.forEach((p, i) => {
    ctx.fillStyle = COLORS[labels ? labels[i] % COLORS.length : 0];
    ctx.globalAlpha = 0.6;
    ctx.fillRect(((p[0] - x0) / (x1 - x0)) * size - 1, size - ((p[1] - y0) / (y1 - y0)) * size - 1, 2, 2);
  });
  return el;
}
