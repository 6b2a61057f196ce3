// #/models: every model; #/models/{ref}: one model (by id, name:version or name@alias) with its metrics, a sample
// grid, an interpolation strip, and each request as curl and as Python (httpx) to run elsewhere.
import { blobUrl, call, formValues, getJSON, getKey, h, link, number, showError, table, when } from "./api.js";

// The model reference as a path segment: encoded, but `name:version` and `name@alias` kept readable.
const refPath = (ref) => encodeURIComponent(ref).replace(/%3A/gi, ":").replace(/%40/gi, "@");
const modelLabel = (m) => (m.name ? `${m.name}:${m.version}` : m.id);

function metricsText(metrics, count = 3) {
  const entries = Object.entries(metrics || {});
  return entries.length ? entries.slice(0, count).map(([k, v]) => `${k} ${number(v)}`).join(" · ") : "—";
}

export async function list(view, _params, signal) {
  view.append(h("h1", {}, "Models"));
  const { items } = await getJSON("/v1/models?limit=200", { signal });
  view.append(
    items.length
      ? table(
          ["model", "family", "dataset", "classes", "metrics", "created"],
          items.map((m) => [
            link(`#/models/${refPath(m.id)}`, modelLabel(m)),
            m.family,
            m.dataset,
            m.conditional ? `${m.classes.length} (conditional)` : m.classes ? String(m.classes.length) : "—",
            metricsText(m.metrics),
            when(m.created_at),
          ]),
          { id: "models-table" },
        )
      : h("p", {}, "No models yet: train one from ", link("#/datasets", "a dataset"), "."),
  );
}

export async function detail(view, [ref], signal) {
  const path = `/v1/models/${refPath(ref)}`;
  const model = await getJSON(path, { signal });
  const points = model.kind === "points";
  const facts = [
    ["id", h("code", {}, model.id)],
    ["family", model.family.toUpperCase()],
    ["dataset", model.dataset],
    ["samples", `${model.kind}, shape [${model.sample_shape.join("×")}]`],
    ["latent dim", String(model.latent_dim)],
    ["classes", model.classes ? `${model.classes.join(", ")}${model.conditional ? " (conditional)" : ""}` : "—"],
    [
      "training",
      model.training_id ? link(`#/trainings/${encodeURIComponent(model.training_id)}`, model.training_id) : "—",
    ],
    ["created", when(model.created_at)],
  ];
  if (model.parent_model_id) facts.push(["started from", link(`#/models/${model.parent_model_id}`, model.parent_model_id)]);
  if (Object.keys(model.tags || {}).length)
    facts.push(["tags", Object.entries(model.tags).map(([k, v]) => `${k}=${v}`).join(", ")]);
  const metrics = Object.entries(model.metrics || {});

  view.append(
    h("h1", {}, "Model ", h("code", {}, modelLabel(model))),
    h(
      "div",
      { class: "columns" },
      h("section", { class: "panel" }, h("h2", {}, "About"), table(["", ""], facts, { class: "facts" })),
      h(
        "section",
        { class: "panel", id: "model-metrics" },
        h("h2", {}, "Metrics"),
        metrics.length
          ? table(["metric", "value"], metrics.map(([k, v]) => [k, number(v)]))
          : h("p", { class: "muted" }, "No metrics."),
      ),
    ),
    generator({
      id: "sample",
      title: "Samples",
      path: `${path}/samples`,
      file: "samples.png",
      model,
      signal,
      fields: [
        ["n", "n", { value: points ? 512 : 16, min: 1 }],
        ["seed", "Seed", { value: 0, min: 0 }],
      ],
      body: (v) => {
        const body = { n: v.n, seed: v.seed, format: "grid" };
        if (v.label !== undefined) body.labels = Array.from({ length: Number(v.n) || 0 }, () => v.label);
        return body;
      },
    }),
    generator({
      id: "interp",
      title: "Interpolation between two seeds",
      path: `${path}/interpolations`,
      file: "interpolation.png",
      model,
      signal,
      fields: [
        ["seed_a", "Seed A", { value: 0, min: 0 }],
        ["seed_b", "Seed B", { value: 1, min: 0 }],
        ["steps", "Steps", { value: 8, min: 2 }],
      ],
      body: (v) => {
        const body = { seed_a: v.seed_a, seed_b: v.seed_b, steps: v.steps, format: "grid" };
        if (v.label !== undefined) body.label = v.label;
        return body;
      },
    }),
  );
}

/** A form that POSTs a generation request and shows the PNG it answers, with the same request as curl and Python. */
function generator({ id, title, path, file, model, signal, fields, body }) {
  const inputs = fields.map(([name, label, attrs]) =>
    h("label", {}, label, h("input", { type: "number", name, id: `${id}-${name.replace("_", "-")}`, ...attrs })),
  );
  const label = model.conditional
    ? h(
        "label",
        {},
        "Label",
        h(
          "select",
          { name: "label", id: `${id}-label` },
          h("option", { value: "" }, id === "sample" ? "each class in turn" : "every class (a row each)"),
          model.classes.map((c, i) => h("option", { value: String(i) }, `${i}: ${c}`)),
        ),
      )
    : null;
  const picture = h("div", { class: "picture", id: `${id}-picture` }, h("p", { class: "muted" }, "Not drawn yet."));
  const info = h("p", { class: "small muted", id: `${id}-info` });
  const errors = h("div", { id: `${id}-errors` });
  const curl = h("pre", { class: "code", id: `${id}-curl` });
  const python = h("pre", { class: "code", id: `${id}-python` });
  const form = h(
    "form",
    { id: `${id}-form`, novalidate: true, class: "inline" },
    inputs,
    label,
    h("button", { type: "submit", id: `${id}-submit` }, "Draw"),
  );
  const request = () => {
    const values = formValues(form);
    if (values.label !== undefined) values.label = Number(values.label);
    return body(values);
  };
  const showSnippets = () => {
    const json = request();
    curl.textContent = asCurl(path, json, file);
    python.textContent = asPython(path, json, file);
  };
  form.addEventListener("input", showSnippets);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(errors, null);
    showSnippets();
    const button = form.querySelector("button");
    button.disabled = true;
    const started = performance.now();
    try {
      const response = await call(path, { method: "POST", json: request(), signal });
      const src = blobUrl(await response.blob(), signal);
      const alt = `${title} of ${modelLabel(model)}`;
      const img = h("img", { id: `${id}-image`, class: model.kind === "images" ? "pixelated" : null, alt, src });
      picture.replaceChildren(img);
      const seed = response.headers.get("x-genserve-seed");
      info.replaceChildren(
        `${seed !== null ? `seed ${seed} · ` : ""}${Math.round(performance.now() - started)} ms · `,
        h("a", { href: src, download: file, id: `${id}-download` }, `download ${file}`),
      );
    } catch (e) {
      if (e.name !== "AbortError") showError(errors, e);
    } finally {
      button.disabled = false;
    }
  });
  showSnippets();
  const copy = (pre, what) =>
    h(
      "button",
      {
        type: "button",
        class: "quiet",
        id: `${pre.id}-copy`,
        onclick: async (event) => {
          const button = event.currentTarget;
          try {
            await navigator.clipboard.writeText(pre.textContent);
            button.textContent = "Copied";
          } catch {
            button.textContent = "Select the text below to copy";
          }
          setTimeout(() => (button.textContent = `Copy as ${what}`), 2000);
        },
      },
      `Copy as ${what}`,
    );
  return h(
    "section",
    { class: "panel", id: `${id}-panel` },
    h("h2", {}, title),
    form,
    errors,
    h(
      "div",
      { class: "result" },
      h("div", {}, picture, info),
      h(
        "div",
        {},
        h("div", { class: "row" }, copy(curl, "curl"), copy(python, "Python")),
        h("details", { class: "snippets" }, h("summary", {}, "The request"), curl, python),
      ),
    ),
  );
}

// ---- the request as code: the key is never written, only $GENSERVE_API_KEY -------------------------------------

const shellQuote = (text) => `'${text.replaceAll("'", "'\\''")}'`;

function asCurl(path, json, file) {
  const lines = [`curl -sS --fail-with-body -X POST ${shellQuote(location.origin + path)}`];
  if (getKey()) lines.push(`-H "Authorization: Bearer $GENSERVE_API_KEY"`);
  lines.push(`-H 'Content-Type: application/json'`, `-d ${shellQuote(JSON.stringify(json))}`, `-o ${file}`);
  return lines.join(" \\\n  ");
}

function pyLiteral(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pyLiteral).join(", ")}]`;
  if (typeof value === "object")
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`).join(", ")}}`;
  return JSON.stringify(value);
}

function asPython(path, json, file) {
  const keyed = Boolean(getKey());
  return [
    ...(keyed ? ["import os", ""] : []),
    "import httpx",
    "",
    "response = httpx.post(",
    `    ${JSON.stringify(location.origin + path)},`,
    ...(keyed ? [`    headers={"Authorization": f"Bearer {os.environ['GENSERVE_API_KEY']}"},`] : []),
    `    json=${pyLiteral(json)},`,
    "    timeout=60,",
    ")",
    "response.raise_for_status()",
    `with open(${JSON.stringify(file)}, "wb") as f:`,
    "    f.write(response.content)",
  ].join("\n");
}
