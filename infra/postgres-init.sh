#!/usr/bin/env bash
# First start of PostgreSQL (docker-entrypoint-initdb.d): one role and database each for the
# registry catalog, MLflow and Prefect, with the passwords of infra/make-secrets.sh.
set -euo pipefail
: "${REGISTRY_DB_PASSWORD:?}" "${MLFLOW_DB_PASSWORD:?}" "${PREFECT_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v registry_pw="$REGISTRY_DB_PASSWORD" \
  -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
  -v prefect_pw="$PREFECT_DB_PASSWORD" <<'SQL'
CREATE ROLE retrain LOGIN PASSWORD :'registry_pw';
CREATE DATABASE registry OWNER retrain;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_pw';
CREATE DATABASE mlflow OWNER mlflow;
CREATE ROLE prefect LOGIN PASSWORD :'prefect_pw';
CREATE DATABASE prefect OWNER prefect;
SQL
