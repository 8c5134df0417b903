# One image for the API and the worker; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY domain domain
COPY application application
COPY projections projections
COPY interfaces interfaces
COPY workers workers
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 10001 billing \
    && mkdir -p /var/lib/billing/exports \
    && chown billing /var/lib/billing/exports

USER billing
EXPOSE 8000
CMD ["billing", "serve", "--host", "0.0.0.0", "--port", "8000"]
