"""The training state shared by the API and the workers: records, status, Redis key names, events, leases,
dispatch and the watchdog. The API reaches trainings through this subpackage only, never through the worker's
runtime (`worker.jobs`, `worker.main`, `worker.preempt`) or the training code."""
