"""Runs a query through Google's official
Python client against BIGQUERY_EMULATOR_HOST and prints the rows as JSON (values as text).

Usage: python scripts/bq_query.py PROJECT "SELECT …"   (tests use it as an independent reader)
"""
import json
import os
import sys

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery


def main():
    project, sql = sys.argv[1], sys.argv[2]
    client = bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=os.environ["BIGQUERY_EMULATOR_HOST"]),
    )
    rows = [[None if v is None else str(v) for v in row.values()] for row in client.query(sql).result()]
    json.dump(rows, sys.stdout)


if __name__ == "__main__":
    main()
