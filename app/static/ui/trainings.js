// #/trainings: the queue and every training; #/trainings/{id}: one training followed live (server-sent events), its
// loss curves, its preview pictures, cancel, and its model when it succeeded.
import {
  ApiError,
  call,
  fetchImage,
  follow,
  getJSON,
  h,
  link,
  number,
  renderProblem,
  seconds,
  showError,
  sleep,
  statusBadge,
  table,
  when,
} from "./api.js";
import { COLORS, lineChart } from "./plot.js";

const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
const LIST_REFRESH_MS = 2000;
const POLL_MS = 1000;
const MAX_PREVIEWS_SHOWN = 24;

const trainingLink = (id) => link(`#/trainings/${encodeURIComponent(id)}`, h("code", {}, id));
const modelLink = (id) => (id ? link(`#/models/${encodeURIComponent(id)}`, h("code", {}, id)) : "—");

function progressCell(p) {
  return h(
    "span",
    { class: "progress-cell" },
    h("progress", { max: 1, value: p.fraction }),
    ` ${number(p.step)} / ${number(p.total_steps)}`,
  );
}

// ---- the list -------------------------------------------------------------------------------------------------

export async function list(view, _params, signal) {
  const queue = h("div", { id: "queue" });
  const all = h("div", { id: "training-list" }, h("p", { class: "muted" }, "Loading trainings…"));
  view.append(
    h("h1", {}, "Trainings"),
    h("section", { class: "panel" }, h("h2", {}, "Queue"), queue),
    h("section", { class: "panel" }, h("h2", {}, "Newest first"), all),
  );
  while (!signal.aborted) {
    let active = false;
    try {
      const [queued, recent] = await Promise.all([
        getJSON("/v1/trainings?status=queued&limit=100", { signal }),
        getJSON("/v1/trainings?limit=100", { signal }),
      ]);
      queue.replaceChildren(
        queued.items.length
          ? table(
              ["#", "training", "dataset", "family", "priority", "starts in"],
              queued.items.map((t) => [
                String(t.queue_position ?? "—"),
                trainingLink(t.id),
                t.request.dataset,
                t.request.family,
                t.request.priority || "normal",
                t.start_eta_seconds === null ? "unknown" : `~${seconds(t.start_eta_seconds)}`,
              ]),
            )
          : h("p", { class: "muted" }, "Nothing is waiting."),
      );
      all.replaceChildren(
        recent.items.length
          ? table(
              ["training", "status", "progress", "model", "dataset", "family", "created"],
              recent.items.map((t) => [
                trainingLink(t.id),
                statusBadge(t.status),
                progressCell(t.progress),
                modelLink(t.model_id),
                t.request.dataset,
                t.request.family + (t.request.conditional ? " (cond.)" : ""),
                when(t.created_at),
              ]),
              { id: "trainings-table" },
            )
          : h("p", {}, "No trainings yet: start one from ", link("#/datasets", "a dataset"), "."),
      );
      active = recent.items.some((t) => !TERMINAL.has(t.status));
    } catch (e) {
      if (e.name === "AbortError") return;
      all.replaceChildren(renderProblem(e));
    }
    if (!active) return; // nothing will change by itself
    await sleep(LIST_REFRESH_MS, signal);
  }
}

// ---- one training ---------------------------------------------------------------------------------------------

export async function detail(view, [id], signal) {
  const path = `/v1/trainings/${encodeURIComponent(id)}`;
  let training = await getJSON(path, { signal });

  const title = h("h1", {}, "Training ", h("code", {}, id), " ", statusBadge(training.status));
  const bar = h("progress", { id: "train-progress", max: 1, value: 0 });
  const percent = h("span", { id: "train-percent", class: "percent" }, "0%");
  const stepText = h("p", { id: "progress-text" });
  const losses = h("p", { id: "losses", class: "small" });
  const state = h("p", { id: "stream-state", class: "muted small" });
  const outcome = h("div", { id: "outcome" });
  const errors = h("div", { id: "training-errors" });
  const cancel = h("button", { type: "button", id: "cancel", class: "danger" }, "Cancel training");
  const chart = h("div", { id: "loss-chart" });
  const strip = h("div", { class: "strip", id: "previews" });
  const metrics = h("div", { id: "training-metrics" });
  const recipe = h("pre", { class: "code" });
  view.append(
    title,
    h("p", { class: "muted", id: "training-summary" }),
    h(
      "section",
      { class: "panel" },
      h("div", { class: "progress-line" }, bar, percent),
      stepText,
      losses,
      state,
      h("div", { class: "row" }, cancel),
      outcome,
      errors,
    ),
    h("section", { class: "panel" }, h("h2", {}, "Loss curves"), chart),
    h("section", { class: "panel" }, h("h2", {}, "Previews"), strip),
    h("section", { class: "panel" }, h("h2", {}, "Metrics"), metrics),
    h("details", {}, h("summary", {}, "Request and recipe"), recipe),
  );

  // Curves: the saved history (written at checkpoints and at the end), then the losses of the progress events since.
  let history = { steps: [], series: {} };
  const live = [];
  const drawCurves = () => {
    const steps = [...history.steps];
    const series = {};
    for (const [name, values] of Object.entries(history.series)) if (name !== "lr") series[name] = [...values];
    const last = steps.length ? steps[steps.length - 1] : -1;
    for (const point of live.filter((p) => p.step > last)) {
      steps.push(point.step);
      for (const name of Object.keys(point.losses)) if (!series[name]) series[name] = steps.slice(0, -1).map(() => null);
      for (const name of Object.keys(series)) series[name].push(point.losses[name] ?? null);
    }
    const names = Object.keys(series);
    chart.replaceChildren(
      lineChart(steps, series, { width: Math.max(300, Math.min(chart.clientWidth || 640, 1200)) }),
      h(
        "p",
        { class: "legend small" },
        names.map((n, i) => h("span", { class: `swatch c${i % COLORS.length}` }, n)),
      ),
    );
  };
  const loadHistory = async () => {
    history = await getJSON(`${path}/history`, { signal });
    drawCurves();
  };

  const shown = new Set();
  const addPreview = async (item) => {
    if (shown.has(item.step)) return;
    shown.add(item.step);
    const { img } = await fetchImage(item.url, `preview at step ${item.step}`, signal);
    const figure = h("figure", { "data-step": item.step }, img, h("figcaption", {}, `step ${number(item.step)}`));
    const after = [...strip.children].find((f) => Number(f.dataset.step) > item.step);
    strip.insertBefore(figure, after || null);
    while (strip.children.length > MAX_PREVIEWS_SHOWN) strip.firstElementChild.remove();
    strip.scrollLeft = strip.scrollWidth;
  };
  const loadPreviews = async () => {
    const { items } = await getJSON(`${path}/previews`, { signal });
    if (!items.length && !strip.children.length) strip.replaceChildren(h("p", { class: "muted" }, "No previews yet."));
    for (const item of items.slice(-MAX_PREVIEWS_SHOWN)) {
      strip.querySelector("p.muted")?.remove();
      await addPreview(item);
    }
  };

  const showProgress = (p) => {
    bar.value = p.fraction;
    percent.textContent = `${Math.floor(p.fraction * 100)}%`;
    const parts = [`step ${number(p.step)} / ${number(p.total_steps)}`, p.phase + (p.detail ? ` (${p.detail})` : "")];
    if (p.eta_seconds !== null && p.eta_seconds !== undefined && p.fraction < 1) parts.push(`ETA ${seconds(p.eta_seconds)}`);
    parts.push(`elapsed ${seconds(p.elapsed_s)}`);
    stepText.textContent = parts.join(" · ");
    const names = Object.keys(p.losses || {});
    losses.textContent = names.length ? names.map((n) => `${n} ${number(p.losses[n])}`).join(" · ") : "";
  };

  const showTraining = (t) => {
    training = t;
    title.replaceChildren("Training ", h("code", {}, id), " ", statusBadge(t.status));
    view.querySelector("#training-summary").textContent =
      `${t.request.family.toUpperCase()} on ${t.request.dataset}${t.request.conditional ? ", conditional" : ""}` +
      ` · created ${when(t.created_at)}` +
      (t.status === "queued" && t.queue_position ? ` · queue position ${t.queue_position}` : "") +
      (t.status === "queued" && t.start_eta_seconds !== null ? ` · starts in ~${seconds(t.start_eta_seconds)}` : "");
    showProgress(t.progress);
    cancel.hidden = TERMINAL.has(t.status) || t.status === "canceling";
    outcome.replaceChildren();
    if (t.status === "succeeded" && t.model_id) {
      outcome.append(
        h("p", { class: "success" }, "Done: ", h("a", { href: `#/models/${t.model_id}`, id: "model-link" }, `open model ${t.model_id} →`)),
      );
    } else if (t.error) {
      outcome.append(renderProblem(new ApiError({ status: null, title: `Training ${t.status}`, detail: t.error, errors: [] })));
    }
    const entries = Object.entries(t.metrics || {});
    metrics.replaceChildren(
      entries.length
        ? table(["metric", "value"], entries.map(([k, v]) => [k, number(v)]))
        : h("p", { class: "muted" }, TERMINAL.has(t.status) ? "No metrics." : "Measured when the training ends."),
    );
    recipe.textContent = JSON.stringify({ request: t.request, config: t.config }, null, 2);
  };

  cancel.addEventListener("click", async () => {
    showError(errors, null);
    cancel.disabled = true;
    try {
      showTraining(await (await call(`${path}/cancel`, { method: "POST", signal })).json());
    } catch (e) {
      if (e.name !== "AbortError") showError(errors, e);
    } finally {
      cancel.disabled = false;
    }
  });

  showTraining(training);
  await Promise.all([loadHistory(), loadPreviews()]).catch((e) => {
    if (e.name !== "AbortError") showError(errors, e);
  });
  if (TERMINAL.has(training.status)) return;

  const onEvent = (name, data) => {
    if (name === "progress") {
      showProgress(data);
      if (data.phase === "train" && Object.keys(data.losses || {}).length) {
        live.push({ step: data.step, losses: data.losses });
        drawCurves();
      }
    } else if (name === "preview") {
      strip.querySelector("p.muted")?.remove();
      addPreview(data).catch((e) => e.name !== "AbortError" && showError(errors, e));
    } else if (name === "status") {
      showTraining({ ...training, ...data, progress: data.progress || training.progress });
    }
  };
  try {
    await follow(`${path}/events`, {
      onEvent,
      signal,
      onState: (s) => (state.textContent = s === "live" ? "Following live." : "Connection lost: resuming…"),
    });
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 429)) throw e;
    state.textContent = "Too many open event streams: polling instead.";
    while (!signal.aborted && !TERMINAL.has(training.status)) {
      await sleep(POLL_MS, signal);
      if (!signal.aborted) showTraining(await getJSON(path, { signal }));
    }
  }
  if (signal.aborted) return;
  state.textContent = "";
  showTraining(await getJSON(path, { signal })); // the final record (finished_at, metrics)
  await Promise.all([loadHistory(), loadPreviews()]);
}
