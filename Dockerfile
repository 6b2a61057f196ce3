# genserve: one image for the API and the workers (`genserve serve` / `genserve worker`).
# CPU by default. For NVIDIA GPUs build with the CUDA wheel of torch:
#   docker build --build-arg TORCH_SPEC="torch==2.13.0" -t genserve:gpu .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    GENSERVE_HOST=0.0.0.0 \
    GENSERVE_STORE_DIR=/data/store \
    GENSERVE_DATA_DIR=/data/data

ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
RUN pip install ${TORCH_SPEC}

WORKDIR /srv/genserve
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY models ./models
RUN pip install . && useradd --create-home --uid 1000 genserve && mkdir -p /data && chown genserve /data

USER genserve
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
ENTRYPOINT ["genserve"]
CMD ["serve"]
