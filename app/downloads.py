"""Built-in data fetched on demand without tying up the API: the first training request for MNIST on a server that
lacks its files starts one download in the background (one per process at a time) and waits for it briefly; every
request meanwhile is answered 503 at once, with `Retry-After`. Why a download failed, and where the files belong,
goes to the log: the answer says only that it failed."""

from __future__ import annotations

import logging
import threading
import time

from models.data.catalog import Catalog, DatasetInfo
from models.errors import GenserveError, Unavailable

log = logging.getLogger("genserve.api")

FIRST_WAIT_S = 2.0  # how long the request that starts a download waits for it (a quick failure is answered at once)
RETRY_AFTER_S = 5  # what a 503 tells the client while a download runs
FAILED_RECENTLY_S = 30.0  # after a failed download, requests are refused this long before another is tried


class DatasetFetcher:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failed_at = -float("inf")

    def fetch(self, dataset_id: str) -> DatasetInfo:
        """The dataset's description, its files fetched if they are missing (503 while that runs or after it failed)."""
        info = self.catalog.info(dataset_id)
        if info.available:
            return info
        with self._lock:
            thread = self._thread
            started = thread is None or not thread.is_alive()
            if started:
                if time.monotonic() - self._failed_at < FAILED_RECENTLY_S:
                    raise self._failed(dataset_id)
                thread = self._thread = threading.Thread(
                    target=self._download, args=(dataset_id,), name=f"fetch-{dataset_id}", daemon=True
                )
                thread.start()
        assert thread is not None
        if started:  # only the request that started the download waits for it, and only briefly
            thread.join(FIRST_WAIT_S)
        if thread.is_alive():
            raise Unavailable(
                f"the {dataset_id} files are being downloaded to this server; retry in a few seconds",
                retry_after_s=RETRY_AFTER_S,
            )
        info = self.catalog.info(dataset_id)
        if not info.available:
            raise self._failed(dataset_id)
        return info

    def _download(self, dataset_id: str) -> None:
        try:
            self.catalog.fetch(dataset_id)
        except GenserveError as exc:
            log.warning("dataset %s: %s", dataset_id, exc.detail)
            self._failed_at = time.monotonic()
        except Exception:
            log.exception("dataset %s: the download failed", dataset_id)
            self._failed_at = time.monotonic()

    @staticmethod
    def _failed(dataset_id: str) -> Unavailable:
        return Unavailable(
            f"{dataset_id} is not on this server and could not be downloaded; the server's log says why, and which "
            "files an operator can copy where",
            retry_after_s=int(FAILED_RECENTLY_S),
        )
