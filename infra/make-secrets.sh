#!/usr/bin/env bash
# Fresh random credentials for the stack; nothing in infra/ ships a password.
#
#   infra/make-secrets.sh compose [FILE]       write FILE (default infra/.env) for
#                                              docker compose --env-file FILE -f infra/compose.yaml
#   infra/make-secrets.sh kubernetes [--print]  create the Secrets of namespace retrain with
#                                              kubectl (--print: show the YAML, create nothing)
#
# Neither overwrites: an existing FILE or set of Secrets is kept, since the databases and
# buckets already use its passwords (delete it on purpose to rotate, then restart the stack).
set -euo pipefail

NAMESPACE=${RETRAIN_NAMESPACE:-retrain}

# Hex only: the values go into URLs (postgresql://user:PASSWORD@host) unescaped.
token() { head -c "${1:-24}" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

generate() {
  POSTGRES_PASSWORD=$(token)
  REGISTRY_DB_PASSWORD=$(token)
  MLFLOW_DB_PASSWORD=$(token)
  PREFECT_DB_PASSWORD=$(token)
  MINIO_ROOT_PASSWORD=$(token)
  S3_SECRET_KEY=$(token)
  RETRAIN_SERVE_TOKEN=$(token 32)
  RETRAIN_ALERTS_TOKEN=$(token 32)
  RETRAIN_ALERTS_HMAC_SECRET=$(token 32)
}

compose() {
  local file=${1:-infra/.env}
  if [[ -e $file ]]; then
    echo "$file exists: keeping it (its passwords are in use)" >&2
    return 0
  fi
  generate
  umask 077
  cat >"$file" <<EOF
# Credentials of the compose stack (infra/make-secrets.sh); keep this file out of git.
POSTGRES_PASSWORD=$POSTGRES_PASSWORD
REGISTRY_DB_PASSWORD=$REGISTRY_DB_PASSWORD
MLFLOW_DB_PASSWORD=$MLFLOW_DB_PASSWORD
PREFECT_DB_PASSWORD=$PREFECT_DB_PASSWORD
MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD
S3_SECRET_KEY=$S3_SECRET_KEY
RETRAIN_SERVE_TOKEN=$RETRAIN_SERVE_TOKEN
RETRAIN_ALERTS_TOKEN=$RETRAIN_ALERTS_TOKEN
RETRAIN_ALERTS_HMAC_SECRET=$RETRAIN_ALERTS_HMAC_SECRET
EOF
  echo "wrote $file"
}

# One Secret: `kubectl create secret generic NAME --from-literal=KEY=VALUE ...`, or with
# --print its manifest (values are hex or URLs of hex: nothing to escape).
secret() {
  local name=$1
  shift
  if [[ $PRINT == 1 ]]; then
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata: {name: %s, namespace: %s}\n' \
      "$name" "$NAMESPACE"
    printf 'type: Opaque\nstringData:\n'
    for pair in "$@"; do printf '  %s: "%s"\n' "${pair%%=*}" "${pair#*=}"; done
    return 0
  fi
  local args=()
  for pair in "$@"; do args+=("--from-literal=$pair"); done
  kubectl create secret generic "$name" -n "$NAMESPACE" "${args[@]}"
}

SECRETS=(postgres-credentials minio-credentials retrain-secrets mlflow-secrets prefect-db
  alertmanager-retrain-token)

# All or none: the Secrets share passwords, so creating some anew would split the set.
existing() {
  local found=()
  for name in "${SECRETS[@]}"; do
    kubectl get secret "$name" -n "$NAMESPACE" >/dev/null 2>&1 && found+=("$name")
  done
  if ((${#found[@]} == ${#SECRETS[@]})); then
    echo "all Secrets of namespace $NAMESPACE exist: kept" >&2
    return 0
  elif ((${#found[@]})); then
    echo "only some Secrets exist (${found[*]}): delete them all to generate a new set:" >&2
    echo "  kubectl -n $NAMESPACE delete secret ${SECRETS[*]}" >&2
    exit 1
  fi
  return 1
}

kubernetes() {
  PRINT=0
  [[ ${1:-} == --print ]] && PRINT=1
  if [[ $PRINT == 0 ]] && existing; then return 0; fi
  generate
  local db=postgres.$NAMESPACE.svc.cluster.local:5432
  secret postgres-credentials \
    "POSTGRES_PASSWORD=$POSTGRES_PASSWORD" \
    "REGISTRY_DB_PASSWORD=$REGISTRY_DB_PASSWORD" \
    "MLFLOW_DB_PASSWORD=$MLFLOW_DB_PASSWORD" \
    "PREFECT_DB_PASSWORD=$PREFECT_DB_PASSWORD"
  secret minio-credentials \
    "MINIO_ROOT_USER=minio-admin" \
    "MINIO_ROOT_PASSWORD=$MINIO_ROOT_PASSWORD" \
    "S3_ACCESS_KEY=retrain" \
    "S3_SECRET_KEY=$S3_SECRET_KEY"
  secret retrain-secrets \
    "RETRAIN_DATABASE_URL=postgresql+psycopg://retrain:$REGISTRY_DB_PASSWORD@$db/registry" \
    "AWS_ACCESS_KEY_ID=retrain" \
    "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY" \
    "RETRAIN_SERVE_TOKEN=$RETRAIN_SERVE_TOKEN" \
    "RETRAIN_ALERTS_TOKEN=$RETRAIN_ALERTS_TOKEN" \
    "RETRAIN_ALERTS_HMAC_SECRET=$RETRAIN_ALERTS_HMAC_SECRET"
  secret mlflow-secrets \
    "MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://mlflow:$MLFLOW_DB_PASSWORD@$db/mlflow" \
    "AWS_ACCESS_KEY_ID=retrain" \
    "AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY"
  # The prefect-server chart reads its database from this Secret (secret.name in its values).
  secret prefect-db \
    "connection-string=postgresql+asyncpg://prefect:$PREFECT_DB_PASSWORD@$db/prefect"
  # Alertmanager sends it as the bearer token of its webhooks (alertmanager.yml).
  secret alertmanager-retrain-token "retrain-alerts-token=$RETRAIN_ALERTS_TOKEN"
}

case ${1:-} in
  compose) shift; compose "$@" ;;
  kubernetes) shift; kubernetes "$@" ;;
  *) echo "usage: $0 compose [FILE] | kubernetes [--print]" >&2; exit 2 ;;
esac
