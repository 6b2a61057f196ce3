// The page's router: #/datasets, #/trainings, #/trainings/{id}, #/models, #/models/{ref}. Each view gets the element
// to fill and an AbortSignal that fires when the user leaves it (its calls, event stream and blob URLs end with it).
import { h, initKeyButton, renderProblem } from "./api.js";
import * as datasets from "./datasets.js";
import * as models from "./models.js";
import * as trainings from "./trainings.js";

const ROUTES = [
  [/^#\/datasets$/, datasets.render, "datasets"],
  [/^#\/trainings$/, trainings.list, "trainings"],
  [/^#\/trainings\/([^/]+)$/, trainings.detail, "trainings"],
  [/^#\/models$/, models.list, "models"],
  [/^#\/models\/([^/]+)$/, models.detail, "models"],
];

let leaving = null;

async function show() {
  if (!location.hash || location.hash === "#/") {
    location.replace("#/datasets");
    return;
  }
  leaving?.abort();
  leaving = new AbortController();
  const { signal } = leaving;
  const view = document.getElementById("view");
  view.replaceChildren();
  window.scrollTo(0, 0);
  const found = ROUTES.find(([pattern]) => pattern.test(location.hash));
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", Boolean(found) && a.dataset.nav === found[2]);
  }
  if (!found) {
    view.append(h("h1", {}, "No such page"), h("p", {}, "Try ", h("a", { href: "#/datasets" }, "the datasets"), "."));
    return;
  }
  const [pattern, render] = found;
  const params = location.hash.match(pattern).slice(1).map(decodeURIComponent);
  document.title = `genserve · ${params.length ? params[0] : found[2]}`;
  try {
    await render(view, params, signal);
  } catch (e) {
    if (e.name !== "AbortError" && !signal.aborted) view.append(renderProblem(e));
  }
}

window.addEventListener("hashchange", show);
initKeyButton(show);
show();
