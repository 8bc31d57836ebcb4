"""Upsert the definition and source files of a directory (QUAERO_DEFINITIONS_DIR) at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

from libs.definition_files import Document, iter_files, read_file
from libs.errors import InvalidArgument, QuaeroError
from libs.proto_json import from_dict
from quaero.v1 import job_definition_pb2, source_pb2
from services.executor.catalogue import Catalogue
from services.executor.convert import definition_from_proto, source_from_proto

log = logging.getLogger(__name__)


async def load_directory(catalogue: Catalogue, root: Path) -> tuple[int, int]:
    """Sources first, then definitions (which may name them). Returns (loaded, rejected); a bad
    file is logged with its path and reasons and skipped, never fatal."""
    docs: list[Document] = []
    rejected = 0
    for path in iter_files(root):
        try:
            docs.extend(read_file(path))
        except QuaeroError as exc:
            rejected += 1
            log.warning("definition file rejected", extra={"file": str(path), "error": exc.message})
    loaded = 0
    for doc in sorted(docs, key=lambda d: d.kind != "source"):
        try:
            if doc.kind == "source":
                source = source_from_proto(from_dict(doc.data, source_pb2.Source))
                if not source.id:
                    raise InvalidArgument.field("id", "is required in a source file (definitions name sources by id)")
                saved_id, changed = (await catalogue.save_source(source, "upsert"))[0].id, True
            else:
                definition = definition_from_proto(from_dict(doc.data, job_definition_pb2.JobDefinition))
                saved, changed = await catalogue.save_definition(definition, "upsert")
                saved_id = saved.id
            loaded += 1
            log.info(
                "definition file loaded",
                extra={"file": doc.origin, "kind": doc.kind, "id": saved_id, "changed": changed},
            )
        except QuaeroError as exc:
            rejected += 1
            log.warning("definition file rejected", extra={"file": doc.origin, "error": exc.message})
    return loaded, rejected
