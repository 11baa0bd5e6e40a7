"""A real slow writer, run as its own process: copies SOURCE to TARGET the way a download or a
slow network copy does. It writes the first HEAD fraction at once, prints "started", then the
rest in CHUNKS pieces with PAUSE seconds before each, either keeping the file open all along
(``--keep-open``, as cp or a browser does) or opening it again in append mode for each piece
(``--reopen``, as some download managers do). Prints "done" when the file is complete.

    python tests/helpers/slow_writer.py SOURCE TARGET HEAD CHUNKS PAUSE (--keep-open | --reopen)
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    source, target, head, chunks, pause, mode = argv
    data = open(source, "rb").read()
    first = int(len(data) * float(head))
    step = -(-(len(data) - first) // int(chunks))
    out = open(target, "wb")
    out.write(data[:first])
    out.flush()
    print("started", flush=True)
    for start in range(first, len(data), step):
        if mode == "--reopen":
            out.close()
        time.sleep(float(pause))
        if mode == "--reopen":
            out = open(target, "ab")
        out.write(data[start:start + step])
        out.flush()
    out.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
