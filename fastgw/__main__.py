import sys

from fastgw.cli.main import main

sys.exit(main())
