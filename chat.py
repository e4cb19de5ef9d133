"""Chat with mmgen in the terminal: `python chat.py [options]` is `mmgen chat [options]`.

    python chat.py                          # the shipped model
    python chat.py --help                   # every option
See mmgen/terminal.py for what it does.
"""
import sys

from mmgen.cli import main

if __name__ == "__main__":
    sys.exit(main(["chat", *sys.argv[1:]]))
