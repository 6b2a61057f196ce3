// #/datasets: the datasets (built-ins, then uploads), an upload form with progress, and the form that starts a
// training.
import {
  ApiError,
  bytes,
  call,
  fetchImage,
  formValues,
  getJSON,
  h,
  number,
  renderProblem,
  showError,
  upload,
  when,
} from "./api.js";
import { scatter } from "./plot.js";

const MAX_LOCAL_PREVIEW_BYTES = 20 * 1024 * 1024;
const MAX_LOCAL_PREVIEW_POINTS = 5000;
// Thumbnails: the API has no picture of a dataset itself. A dataset shows the latest preview picture of the newest
// succeeded training on it (for points, the model's samples over the data), else the scatter drawn in this tab from
// its CSV before the upload (kept here, by dataset id), else a placeholder.
const localPreviews = new Map();

export async function render(view, _params, signal) {
  const list = h("div", { class: "cards", id: "dataset-list" }, h("p", { class: "muted" }, "Loading datasets…"));
  const uploadPanel = uploadForm(signal, (dataset) => refresh(dataset.id));
  const trainPanel = h("section", { class: "panel", id: "train" });
  view.append(h("h1", {}, "Datasets"), h("div", { class: "columns" }, uploadPanel, trainPanel), list);

  async function refresh(selected) {
    let datasets;
    try {
      datasets = await allDatasets(signal);
    } catch (e) {
      if (e.name !== "AbortError") list.replaceChildren(renderProblem(e));
      return;
    }
    list.replaceChildren(...datasets.map((d) => card(d, () => selectForTraining(trainPanel, d.id))));
    trainPanel.replaceChildren(...trainForm(datasets, selected, signal));
    thumbnails(datasets, list, signal).catch(() => {}); // decoration: a failure leaves the placeholders
  }
  await refresh(null);
}

async function allDatasets(signal) {
  const items = [];
  for (let url = "/v1/datasets?limit=1000"; url; ) {
    const page = await getJSON(url, { signal });
    items.push(...page.items);
    url = page.next;
  }
  return items;
}

function card(d, onTrain) {
  const thumb = h("div", { class: "thumb-slot", "data-dataset": d.id }, localPreviews.get(d.id) || placeholder(d));
  return h(
    "article",
    { class: "card dataset", "data-id": d.id },
    thumb,
    h(
      "div",
      { class: "card-body" },
      h("h3", {}, d.name, " ", d.builtin ? h("span", { class: "badge" }, "built-in") : null),
      h("p", { class: "muted small" }, h("code", {}, d.id)),
      h("p", {}, `${d.kind} · shape [${d.shape.join("×")}] · ${number(d.size)} samples`),
      d.classes ? h("p", { class: "small" }, `${d.classes.length} classes: ${d.classes.slice(0, 6).join(", ")}`) : null,
      d.description ? h("p", { class: "small muted description", title: d.description }, d.description) : null,
      d.created_at ? h("p", { class: "small muted" }, `uploaded ${when(d.created_at)}`) : null,
      d.available ? null : h("p", { class: "small warn" }, "files missing: a training fetches them"),
      h("button", { type: "button", class: "quiet", onclick: onTrain }, "Train on this"),
    ),
  );
}

function placeholder(d) {
  return h("div", { class: "thumb placeholder" }, d.kind === "points" ? "⋰" : "▦");
}

/** The latest preview of a succeeded training on each dataset, as its thumbnail. */
async function thumbnails(datasets, list, signal) {
  const { items } = await getJSON("/v1/trainings?status=succeeded&limit=200", { signal });
  const newest = new Map();
  for (const t of items) if (!newest.has(t.request.dataset)) newest.set(t.request.dataset, t.id);
  for (const d of datasets) {
    const training = newest.get(d.id);
    if (!training) continue;
    const previews = (await getJSON(`/v1/trainings/${training}/previews`, { signal })).items;
    if (!previews.length) continue;
    const { img } = await fetchImage(previews[previews.length - 1].url, `latest preview of a training on ${d.name}`, signal);
    img.className = "thumb";
    list.querySelector(`[data-dataset="${CSS.escape(d.id)}"]`)?.replaceChildren(img);
  }
}

// ---- upload ---------------------------------------------------------------------------------------------------

function uploadForm(signal, onUploaded) {
  const file = h("input", { type: "file", name: "file", id: "upload-file", accept: ".csv,.npz,.zip", required: true });
  const name = h("input", { type: "text", name: "name", id: "upload-name", maxlength: "100", required: true });
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const status = h("p", { class: "small", id: "upload-status" });
  const preview = h("div", { class: "thumb-slot", id: "upload-preview" });
  const errors = h("div", { id: "upload-errors" });
  let parsed = null; // the chosen CSV's points, drawn before the upload

  file.addEventListener("change", async () => {
    const f = file.files[0];
    preview.replaceChildren();
    parsed = null;
    if (!f) return;
    if (!name.value) name.value = f.name.replace(/\.[^.]+$/, "");
    if (/\.csv$/i.test(f.name) && f.size <= MAX_LOCAL_PREVIEW_BYTES) {
      parsed = parseCsv(await f.text());
      if (parsed) preview.replaceChildren(scatter(parsed.points, parsed.labels), h("p", { class: "small muted" }, parsed.summary));
    }
  });

  const form = h(
    "form",
    { id: "upload-form", novalidate: true },
    h("label", {}, "File (.csv points, .npz, .zip of images)", file),
    h("label", {}, "Name", name),
    preview,
    h("div", { class: "row" }, h("button", { type: "submit", id: "upload-submit" }, "Upload"), progress),
    status,
    errors,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errors, null);
    const chosen = file.files[0];
    if (!chosen) {
      showError(errors, localProblem("Choose a file to upload", ["body", "file"], "no file chosen"));
      return;
    }
    const data = new FormData();
    data.append("file", chosen);
    data.append("name", name.value);
    progress.hidden = false;
    progress.value = 0;
    form.querySelector("button").disabled = true;
    try {
      const { status: code, body } = await upload(
        "/v1/datasets",
        data,
        (sent, total) => {
          progress.value = total ? sent / total : 0;
          status.textContent = `Sending ${bytes(sent)}${total ? ` of ${bytes(total)}` : ""}…`;
        },
        signal,
      );
      progress.value = 1;
      status.textContent =
        code === 201 ? `Stored as ${body.id}.` : `Already stored as ${body.id}${body.note ? `: ${body.note}` : "."}`;
      if (parsed && !localPreviews.has(body.id)) localPreviews.set(body.id, scatter(parsed.points, parsed.labels));
      onUploaded(body);
    } catch (e) {
      if (e.name === "AbortError") return;
      status.textContent = "";
      progress.hidden = true;
      showError(errors, e);
    } finally {
      form.querySelector("button").disabled = false;
    }
  });
  return h("section", { class: "panel", id: "upload" }, h("h2", {}, "Upload a dataset"), form);
}

/** The first two numeric columns of a CSV (and its `label` column) for a scatter; null when it does not look like
 * one. The server's parse is the real one: this is only a look before sending. */
function parseCsv(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim());
  if (lines.length < 2) return null;
  const header = lines[0].split(",").map((c) => c.trim());
  const labelAt = header.indexOf("label");
  const coords = header.map((_, i) => i).filter((i) => i !== labelAt);
  if (coords.length < 1) return null;
  const points = [];
  const labelNames = [];
  const labels = [];
  for (const line of lines.slice(1, MAX_LOCAL_PREVIEW_POINTS + 1)) {
    const cells = line.split(",");
    const x = Number(cells[coords[0]]);
    const y = coords.length > 1 ? Number(cells[coords[1]]) : 0;
    if (!Number.isFinite(x) || !Number.isFinite(y)) return null;
    points.push([x, y]);
    if (labelAt >= 0) {
      const label = cells[labelAt].trim();
      if (!labelNames.includes(label)) labelNames.push(label);
      labels.push(labelNames.indexOf(label));
    }
  }
  const rows = lines.length - 1;
  const summary =
    `${number(rows)} rows, ${coords.length} coordinate${coords.length > 1 ? "s" : ""}` +
    (labelAt >= 0 ? `, ${labelNames.length} labels` : "") +
    (rows > points.length ? ` (first ${number(points.length)} drawn)` : "");
  return { points, labels: labelAt >= 0 ? labels : null, summary };
}

function localProblem(title, loc, msg) {
  return new ApiError({ status: null, title, detail: "", errors: [{ loc, msg }] });
}

// ---- train ----------------------------------------------------------------------------------------------------

function selectForTraining(panel, id) {
  const select = panel.querySelector("select[name=dataset]");
  if (!select) return;
  select.value = id;
  select.dispatchEvent(new Event("change"));
  panel.scrollIntoView({ behavior: "smooth", block: "start" });
}

function trainForm(datasets, selected, signal) {
  const byId = new Map(datasets.map((d) => [d.id, d]));
  const dataset = h(
    "select",
    { name: "dataset", id: "train-dataset" },
    datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.id})`)),
  );
  if (selected) dataset.value = selected;
  const conditional = h("input", { type: "checkbox", name: "conditional", id: "train-conditional" });
  const conditionalLabel = h("label", { class: "check" }, conditional, "conditional (on the dataset's classes)");
  const syncConditional = () => {
    const d = byId.get(dataset.value);
    const labeled = Boolean(d && d.classes && d.classes.length);
    conditional.disabled = !labeled;
    if (!labeled) conditional.checked = false;
    conditionalLabel.classList.toggle("muted", !labeled);
  };
  dataset.addEventListener("change", syncConditional);
  syncConditional();
  const num = (name, label, attrs = {}) =>
    h("label", {}, label, h("input", { type: "number", name, id: `train-${name.replace("_", "-")}`, ...attrs }));
  const errors = h("div", { id: "train-errors" });
  const form = h(
    "form",
    { id: "train-form", novalidate: true },
    h("label", {}, "Dataset", dataset),
    h(
      "label",
      {},
      "Family",
      h(
        "select",
        { name: "family", id: "train-family" },
        h("option", { value: "gan" }, "GAN"),
        h("option", { value: "vae" }, "VAE"),
      ),
    ),
    num("steps", "Steps", { min: 1, placeholder: "the dataset's recipe" }),
    conditionalLabel,
    h("label", {}, "Model name (optional)", h("input", { type: "text", name: "model_name", id: "train-model-name" })),
    h(
      "details",
      {},
      h("summary", {}, "More options"),
      h(
        "div",
        { class: "options" },
        num("batch_size", "Batch size", { min: 1 }),
        num("width", "Width", { min: 8 }),
        num("latent_dim", "Latent dim", { min: 1 }),
        num("lr", "Learning rate", { step: "any" }),
        num("seed", "Seed", { min: 0 }),
        num("preview_every", "Preview every (steps)", { min: 0 }),
      ),
    ),
    h("button", { type: "submit", id: "train-submit" }, "Start training"),
    errors,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errors, null);
    const body = formValues(form);
    if (!body.conditional) delete body.conditional;
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const training = await (await call("/v1/trainings", { method: "POST", json: body, signal })).json();
      location.hash = `#/trainings/${encodeURIComponent(training.id)}`;
    } catch (e) {
      if (e.name !== "AbortError") showError(errors, e);
    } finally {
      form.querySelector("button[type=submit]").disabled = false;
    }
  });
  return [h("h2", {}, "Train a model"), form];
}
