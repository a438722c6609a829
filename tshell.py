#!/usr/bin/env python3
"""tshell: talk to smanager servers; ``tshell.py --help`` says how.

The same program is the ``tshell`` command once smanager is pip-installed.
"""

import sys

from smanager.tshell import main

if __name__ == "__main__":
    sys.exit(main())
