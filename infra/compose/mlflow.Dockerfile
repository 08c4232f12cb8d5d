# MLflow tracking server with the PostgreSQL driver and the S3 client it needs.
FROM python:3.11-slim-bookworm
# boto3<1.36 keeps Content-MD5 on bulk deletes (some S3 servers require it).
RUN pip install --no-cache-dir "mlflow==3.17.*" psycopg2-binary "boto3<1.36" \
    && useradd --create-home --uid 1000 mlflow
USER mlflow
EXPOSE 5000
