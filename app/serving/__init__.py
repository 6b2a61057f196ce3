"""The serving fast path: everything a sample request goes through, from the first byte to the last.

A single-sample request costs about as much in the framework as in the model, so on this path each piece steps
around a general mechanism where that mechanism's cost showed up in the measurements (bench/serve.py,
bench/route_cpu.py; BENCHMARKS.md):

- `edge`: one ASGI middleware for the body limit and the request metrics, with plain dicts instead of
  prometheus-client's locked children, because two middlewares and locked counters cost per request.
- `lean_route`: `LeanRoute` fills the sampling endpoint's parameters from a plan made once, instead of FastAPI's
  per-request dependency solving, content-type sniffing and exit stacks; validation and OpenAPI stay FastAPI's.
- `sampling`: the checks of a request against its model (format, labels, latent vectors), its deadline and client
  disconnects, and a response built from ready bytes without Starlette's general header handling.
- `batching`: the dynamic batcher, plain asyncio, so concurrent requests share one forward pass and every caller
  gets its own result; passes run in an inference thread, or inline on one core where a thread only adds hand-offs.
- `model_cache`: loaded models in an LRU within a memory budget, one batcher each, calibrated so that batched rows
  equal rows run alone (`models.sampling`).
- `encoding`: response bodies written inside the pass, with a direct PNG writer for small images, because a general
  image encoder's per-image overhead is most of the cost at these sizes.
- `vae_inputs`: the JSON-or-multipart inputs of reconstructions and scores, parsed by hand since which of the two a
  request may carry depends on the model it names.
"""
