"""Every route this client uses, as a `Call`: the request to send and how to read its answer.

Both clients are thin I/O shells over these: `Client` runs a call with blocking I/O, `AsyncClient` with asyncio, and
neither knows a path, a body or a field name. A call also says whether it may be sent again after a lost
connection (`idempotent`): reads, PUTs and deletes, POSTs with an `Idempotency-Key`, the generation routes (they
store nothing) and dataset uploads (stored content-addressed: the same file again is the same dataset).
"""

from __future__ import annotations

import numbers
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from .errors import GenserveError
from .payloads import Body, FileInput, dataset_upload, vae_inputs
from .samples import Samples
from .types import Dataset, Model, ModelName, Page

T = TypeVar("T")
Record = dict[str, Any]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT"})
IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str  # from the service's root ("/v1/..."), or a `next` link as the server gave it
    parse: Callable[[httpx.Response], T]
    params: Sequence[tuple[str, str | int]] = ()
    body: Body = Body()
    headers: Mapping[str, str] = field(default_factory=dict)
    repeatable: bool = False  # a POST that sending twice does once (see the module's doc)
    read_timeout: float | None = None  # instead of the client's timeout (event streams wait on keep-alives)

    @property
    def idempotent(self) -> bool:
        return self.method in IDEMPOTENT_METHODS or IDEMPOTENCY_KEY in self.headers or self.repeatable


Ref = str | Dataset | Model
"""An id (a model's also `name:version` or `name@alias`), or the record itself."""


def ref_text(ref: Ref) -> str:
    return ref if isinstance(ref, str) else ref.id


def segment(ref: Ref) -> str:
    """An id or model reference as one path segment (`name:version` and `name@alias` keep their `:` and `@`)."""
    return quote(ref_text(ref), safe=":@")


def query(**values: Any) -> list[tuple[str, str | int]]:
    """Query parameters, leaving out those not given."""
    return [
        (k, v if isinstance(v, int) and not isinstance(v, bool) else str(v)) for k, v in values.items() if v is not None
    ]


def idempotency_headers(key: str | None) -> dict[str, str]:
    """Always a key on a new training: it can then be sent again after a lost connection without starting twice
    (the server answers a repeated key with the first answer)."""
    return {IDEMPOTENCY_KEY: key or str(uuid.uuid4())}


# Answers


def record(response: httpx.Response) -> Record:
    """The JSON object of a successful answer; GenserveError when something else answered (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        kind = response.headers.get("content-type", "no content type")
        raise GenserveError(f"{response.request.url} answered {response.status_code} without a JSON object ({kind})")
    return body


def nothing(response: httpx.Response) -> None:
    return None


def dataset(response: httpx.Response) -> Dataset:
    return Dataset.from_record(record(response))


def model(response: httpx.Response) -> Model:
    return Model.from_record(record(response))


def model_name(response: httpx.Response) -> ModelName:
    return ModelName.from_record(record(response))


def page_of(item: Callable[[Record], T]) -> Callable[[httpx.Response], Page[T]]:
    def parse(response: httpx.Response) -> Page[T]:
        body = record(response)
        nxt = body.get("next")
        return Page([item(r) for r in body.get("items", [])], nxt if isinstance(nxt, str) and nxt else None)

    return parse


def samples(fmt: str | None) -> Callable[[httpx.Response], Samples]:
    return lambda response: Samples.from_response(response, fmt)


def scores(response: httpx.Response) -> list[float]:
    return [float(s) for s in record(response)["scores"]]


def next_page(call: Call[Page[T]], page: Page[T]) -> Call[Page[T]] | None:
    """The call for the page after `page`: its `next` link as given (it holds the query and the cursor)."""
    return replace(call, path=page.next, params=()) if page.next else None


# Datasets


def list_datasets(kind: str | None, page_size: int) -> Call[Page[Dataset]]:
    return Call("GET", "/v1/datasets", page_of(Dataset.from_record), query(kind=kind, limit=page_size))


def get_dataset(dataset_id: Ref) -> Call[Dataset]:
    return Call("GET", f"/v1/datasets/{segment(dataset_id)}", dataset)


def upload_dataset(
    file: FileInput | Any, name: str, filename: str | None, idempotency_key: str | None, labels: Any
) -> Call[Dataset]:
    body = dataset_upload(file, name, filename, labels)
    headers = {IDEMPOTENCY_KEY: idempotency_key} if idempotency_key else {}  # none needed: see `repeatable`
    return Call("POST", "/v1/datasets", dataset, body=body, headers=headers, repeatable=True)


def delete_dataset(dataset_id: Ref) -> Call[None]:
    return Call("DELETE", f"/v1/datasets/{segment(dataset_id)}", nothing)


# Trainings (answers stay records: the clients wrap them in their own handles)


def create_training(
    dataset_id: Ref, family: str, idempotency_key: str | None, options: Mapping[str, Any]
) -> Call[Record]:
    body = Body(json={"dataset": ref_text(dataset_id), "family": family, **options})
    return Call("POST", "/v1/trainings", record, body=body, headers=idempotency_headers(idempotency_key))


def list_trainings(
    status: str | None, dataset_id: Ref | None, family: str | None, model_name: str | None, page_size: int
) -> Call[Page[Record]]:
    params = query(status=status, dataset=_opt_ref(dataset_id), family=family, model_name=model_name, limit=page_size)
    return Call("GET", "/v1/trainings", page_of(dict), params)


def get_training(training_id: str) -> Call[Record]:
    return Call("GET", f"/v1/trainings/{segment(training_id)}", record)


def cancel_training(training_id: str) -> Call[Record]:
    return Call("POST", f"/v1/trainings/{segment(training_id)}/cancel", record)


def training_events(training_id: str, headers: Mapping[str, str], read_timeout: float) -> Call[None]:
    """The event stream; read by the clients line by line, so the answer's parse is not used."""
    headers = {"Accept": "text/event-stream", **headers}
    return Call(
        "GET", f"/v1/trainings/{segment(training_id)}/events", nothing, headers=headers, read_timeout=read_timeout
    )


# Models


def list_models(
    dataset_id: Ref | None, family: str | None, model_name: str | None, tag: str | None, page_size: int
) -> Call[Page[Model]]:
    params = query(dataset=_opt_ref(dataset_id), family=family, model_name=model_name, tag=tag, limit=page_size)
    return Call("GET", "/v1/models", page_of(Model.from_record), params)


def get_model(ref: Ref) -> Call[Model]:
    return Call("GET", f"/v1/models/{segment(ref)}", model)


def delete_model(ref: Ref) -> Call[None]:
    return Call("DELETE", f"/v1/models/{segment(ref)}", nothing)


def sample(
    ref: Ref,
    n: int | None,
    seed: int | None,
    labels: Sequence[int] | None,
    z: Any,
    fmt: str | None,
    options: Mapping[str, Any],
) -> Call[Samples]:
    request = _given(n=n, seed=seed, labels=_ints(labels), z=_vectors(z), format=fmt, **options)
    return _generation(ref, "samples", Body(json=request), fmt)


def interpolate(
    ref: Ref,
    ends: Mapping[str, Any],
    steps: int,
    label: int | None,
    fmt: str | None,
    options: Mapping[str, Any],
) -> Call[Samples]:
    request = _given(**{k: _vectors(v) if k.startswith("z_") else v for k, v in ends.items()})
    request.update(_given(steps=steps, label=label, format=fmt, **options))
    return _generation(ref, "interpolations", Body(json=request), fmt)


def reconstruct(ref: Ref, inputs: Any, labels: Sequence[int] | None, fmt: str | None) -> Call[Samples]:
    return _generation(ref, "reconstructions", vae_inputs(inputs, labels, fmt), fmt)


def score(
    ref: Ref, inputs: Any, labels: Sequence[int] | None, k: int | None, timeout_ms: int | None
) -> Call[list[float]]:
    path = f"/v1/models/{segment(ref)}/scores"
    return Call(
        "POST", path, scores, query(k=k, timeout_ms=timeout_ms), vae_inputs(inputs, labels, None), repeatable=True
    )


def _generation(ref: Ref, route: str, body: Body, fmt: str | None) -> Call[Samples]:
    return Call("POST", f"/v1/models/{segment(ref)}/{route}", samples(fmt), body=body, repeatable=True)


def _opt_ref(ref: Ref | None) -> str | None:
    return None if ref is None else ref_text(ref)


def _given(**values: Any) -> dict[str, Any]:
    """A JSON request of the fields given: the server reads a left-out field as its default."""
    return {k: v for k, v in values.items() if v is not None}


def _ints(values: Sequence[int] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


def _vectors(z: Any) -> Any:
    """Latent vectors as JSON: an array's rows as lists of floats."""
    if z is None:
        return None
    if hasattr(z, "tolist"):
        z = z.tolist()
    if len(z) and isinstance(z[0], numbers.Real):  # one vector (z_a, z_b)
        return [float(v) for v in z]
    return [[float(v) for v in row] for row in z]


# Model names


def list_model_names(page_size: int) -> Call[Page[ModelName]]:
    return Call("GET", "/v1/model-names", page_of(ModelName.from_record), query(limit=page_size))


def get_model_name(name: str) -> Call[ModelName]:
    return Call("GET", f"/v1/model-names/{segment(name)}", model_name)


def set_alias(name: str, alias: str, version: int) -> Call[ModelName]:
    path = f"/v1/model-names/{segment(name)}/aliases/{segment(alias)}"
    return Call("PUT", path, model_name, body=Body(json={"version": version}))


def delete_alias(name: str, alias: str) -> Call[None]:
    return Call("DELETE", f"/v1/model-names/{segment(name)}/aliases/{segment(alias)}", nothing)
