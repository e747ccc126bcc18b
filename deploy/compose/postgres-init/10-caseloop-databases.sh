#!/bin/bash
# Runs once, on the first start of an empty data volume (the postgres image's initdb hook): a role and
# a database per service, each role owning only its own database (DESIGN.md §4: no service reads
# another's tables). CREATEDB because the operator's `caseloop replay` and `verify` build shadow
# databases beside the live one with the service's own credentials (ADR 0008). The passwords come
# from the environment (.env); the schemas are `caseloop migrate`'s work.
set -euo pipefail

# CASELOOP_SERVICES: deploy/tests/test_compose.py runs this script on names of its own.
for service in ${CASELOOP_SERVICES:-intake triage dispatch supervision}; do
    password_variable="${service^^}_DB_PASSWORD"
    password="${!password_variable:?$password_variable is not set}"
    psql --variable=ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=service="$service" --set=password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN CREATEDB PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
done
