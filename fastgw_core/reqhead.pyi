COMPILED: bool

Result = tuple[int, str, bytes, bool, bool, bytes | None, bytes]

def parse_request_head(
    data: bytes, start: int, max_head: int, max_headers: int, max_url: int
) -> Result | None: ...
def parse_request_head_py(
    data: bytes, start: int, max_head: int, max_headers: int, max_url: int
) -> Result | None: ...

parse_request_head_c: object | None
