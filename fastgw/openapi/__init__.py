"""OpenAPI (with API Gateway extensions) to and from fastgw APIs; see ``fastgw.openapi.importer``."""

from fastgw.openapi.importer import (
    MAX_DOCUMENT_BYTES,
    ImportProblem,
    ImportResult,
    OpenApiImportError,
    detect_kind,
    import_document,
    load_document,
)

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "ImportProblem",
    "ImportResult",
    "OpenApiImportError",
    "detect_kind",
    "import_document",
    "load_document",
]
