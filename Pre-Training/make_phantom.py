"""Write the phantom CT slice store and the three labelled phantom tasks: ``medssl phantom``.

    python Pre-Training/make_phantom.py --out demo-output/phantom

The same options as ``medssl phantom`` (medssl/commands/phantom.py).
"""
import sys

from medssl.commands.phantom import main

if __name__ == "__main__":
    sys.exit(main())
