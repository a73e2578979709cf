# The pipeline's own image: upload.py, the producer, `python -m db`, the Faust workers and the viewer.
FROM python:3.11.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md settings.py upload.py ./
COPY db db
COPY producer producer
COPY consumer consumer
COPY viewer viewer
RUN pip install .
# model weights are mounted (MODEL_WEIGHTS) or downloaded by torchvision at first start
USER nobody
CMD ["faust", "-A", "consumer.app", "worker", "-l", "info"]
