IN_HEAD: int
IN_HTTP10: int
IN_CLOSE: int
IN_RAW: int
OUT_CHUNKED: int
OUT_CLOSE: int
COMPILED: bool

def rewrite_response_head(raw: bytes, request_id: bytes, flags: int) -> tuple[bytes, int, int]: ...
def rewrite_response_head_py(raw: bytes, request_id: bytes, flags: int) -> tuple[bytes, int, int]: ...

rewrite_response_head_c: object | None

def relay_response(
    data: bytes, request_id: bytes, flags: int
) -> tuple[bytes, int, int, bool, int] | None: ...
def relay_response_py(
    data: bytes, request_id: bytes, flags: int
) -> tuple[bytes, int, int, bool, int] | None: ...

relay_response_c: object | None

def request_id(prefix: bytes, n: int) -> bytes: ...
def request_id_py(prefix: bytes, n: int) -> bytes: ...

request_id_c: object | None

def find_header(headers: list[tuple[str, str]], lname: str) -> str | None: ...
def find_header_py(headers: list[tuple[str, str]], lname: str) -> str | None: ...

find_header_c: object | None

def has_header_line(lines: list[bytes] | None, names: tuple[bytes, ...]) -> bool: ...
def has_header_line_py(lines: list[bytes] | None, names: tuple[bytes, ...]) -> bool: ...

has_header_line_c: object | None

def local_response(
    head: bytes, request_id: bytes, date_line: bytes, conn_line: bytes, body: bytes
) -> bytes: ...
def local_response_py(
    head: bytes, request_id: bytes, date_line: bytes, conn_line: bytes, body: bytes
) -> bytes: ...

local_response_c: object | None
