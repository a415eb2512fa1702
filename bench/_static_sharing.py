"""The benchmark's reference: a bare Starlette app answering the Delta Sharing calls the
official client makes for ``load_as_pandas`` (metadata, query), serving plaintext Parquet files
from a local folder with ``FileResponse`` (which handles ``HEAD`` and ``Range`` itself).

Run: ``python -m bench._static_sharing FOLDER PORT``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from civicshare.sharing.spark import spark_schema_string

TABLE = "/delta-sharing/shares/{share}/schemas/{schema}/tables/{table}"


def build_app(folder: Path) -> Starlette:
    files = sorted(folder.glob("*.parquet"))
    schema_string = spark_schema_string(pq.read_schema(files[0]))
    head = [
        {"protocol": {"minReaderVersion": 1}},
        {
            "metaData": {
                "id": "static",
                "format": {"provider": "parquet"},
                "schemaString": schema_string,
                "partitionColumns": [],
            }
        },
    ]

    def ndjson(lines: list[dict[str, object]]) -> Response:
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return Response(
            body, media_type="application/x-ndjson", headers={"Delta-Table-Version": "1"}
        )

    async def metadata(request: Request) -> Response:
        return ndjson(head)

    async def query(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        lines = [
            {
                "file": {
                    "url": f"{base}/files/{path.name}",
                    "id": path.stem,
                    "partitionValues": {},
                    "size": path.stat().st_size,
                }
            }
            for path in files
        ]
        return ndjson(head + lines)

    async def serve(request: Request) -> Response:
        return FileResponse(folder / request.path_params["name"])

    return Starlette(
        routes=[
            Route(TABLE + "/metadata", metadata),
            Route(TABLE + "/query", query, methods=["POST"]),
            Route("/files/{name}", serve, methods=["GET", "HEAD"]),
        ]
    )


if __name__ == "__main__":
    uvicorn.run(
        build_app(Path(sys.argv[1])),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        access_log=False,
        log_level="warning",
    )
