# The pipeline's own image: upload.py, the producer, `python -m db`, the Faust workers, training
# and the viewer. CPU-only torch: nodes without a GPU should not pull a multi-GB CUDA build
# (override TORCH_INDEX_URL to build for another platform; where download.pytorch.org is not
# reachable, TORCH_INDEX_URL=https://pypi.org/simple works, with CUDA's libraries: 6.4 GB).
# Built and run by tests/e2e/test_containers.py (podman; docs/deploying/docker-compose.md).
FROM python:3.11.11-slim-bookworm
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    # /tmp is the only writable place at run time (HOME stays nobody's unwritable /nonexistent):
    # the ONNX export cache, Faust's data directory, torchvision's weight download
    MODEL_CACHE_DIR=/tmp/visionscaling-cache FAUST_DATADIR=/tmp/visionscaling-faust TORCH_HOME=/tmp/torch
WORKDIR /app
# dependencies only (the project's modules are never installed into site-packages: they run
# from /app): torch and torchvision from the CPU index first, in a layer of their own that an
# edit of pyproject.toml or README.md does not rebuild; then the rest from PyPI
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.15.0 torchvision==0.29.2
COPY pyproject.toml README.md ./
RUN pip install .
COPY settings.py upload.py ./
COPY common common
COPY db db
COPY producer producer
COPY consumer consumer
COPY training training
COPY viewer viewer
# model weights are mounted (MODEL_WEIGHTS) or downloaded by torchvision at first start;
# code read-only for the user the containers run as
USER nobody
CMD ["faust", "-A", "consumer.app", "worker", "-l", "info"]
