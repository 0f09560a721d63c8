"""FastGrowCut as a long-lived peer process for the interactive benchmark: one line on stdin
("IMAGE SEEDS OUTPUT", tab-separated) per update, one JSON line back (classical_peer_growcut's),
so ITK is imported once, not once per stroke. Run with the peer venv's python."""

import sys

from classical_peer_growcut import main

if __name__ == "__main__":
    for line in sys.stdin:
        if line.strip():
            main(*line.rstrip("\n").split("\t"))
            sys.stdout.flush()
