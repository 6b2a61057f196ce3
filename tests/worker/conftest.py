"""The store on both backends (a local directory, S3 on moto), as the store tests use it."""

from tests.models.conftest import backend, store  # noqa: F401 (fixtures)
