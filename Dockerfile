# genserve: one image for the API and the workers (`genserve serve` / `genserve worker`).
#
# CPU by default: torch's CPU build from PyTorch's CPU wheel index. For NVIDIA GPUs, name the CUDA build of torch:
#   docker build --build-arg TORCH_VARIANT=cu128 -t genserve:gpu .
# TORCH_VARIANT is a PyTorch wheel index (cpu, cu126, cu128, cu130, ...). The host's NVIDIA driver must support that
# CUDA version (CUDA 12.6: driver 560 or newer; 12.8: 570 or newer; 13.0: 580 or newer), and containers need the
# NVIDIA container toolkit.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    GENSERVE_HOST=0.0.0.0 \
    GENSERVE_STORE_DIR=/data/store \
    GENSERVE_DATA_DIR=/data/data

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
RUN pip install "torch==${TORCH_VERSION}+${TORCH_VARIANT}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

WORKDIR /srv/genserve
COPY pyproject.toml README.md genserve.py ./
COPY app ./app
COPY worker ./worker
COPY models ./models
COPY client ./client
RUN pip install "./client[cli]" . && useradd --create-home --uid 1000 genserve && mkdir -p /data && chown genserve /data

USER 1000
VOLUME ["/data"]
EXPOSE 8000
# No HEALTHCHECK here: the image runs workers too, which serve no HTTP. The compose file gives the API its own.
ENTRYPOINT ["genserve"]
CMD ["serve"]
