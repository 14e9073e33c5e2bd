"""Build selection switch (cf. aiohttp ``helpers.NO_EXTENSIONS``)."""

import os

NO_EXTENSIONS: bool = bool(os.environ.get("FASTGW_NO_EXTENSIONS"))
