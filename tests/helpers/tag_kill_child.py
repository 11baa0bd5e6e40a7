"""Child process of tests/test_tag_kill.py: advance each named file by one tag write.

Usage: python tag_kill_child.py FILE...

Prints "ready" once imported, then for every file writes the *other* of two genre states
(A if the file is not in state A, else B) with tagger.library.tags.write_genres, then prints "done".
The parent SIGKILLs it at a random instant in between.
"""

from __future__ import annotations

import sys

STATE_A = (["Kill A"], 0.125)
STATE_B = (["Kill B", "Kill B two"], 0.875)


def advance(path: str) -> None:
    """One write: flip the file between STATE_A and STATE_B."""
    from tagger.library.tags import read_genres, write_genres

    genres, confidence = STATE_B if read_genres(path) == STATE_A[0] else STATE_A
    write_genres(path, genres, confidence)


def main(argv: list[str]) -> None:
    import tagger.library.tags  # noqa: F401  (import before "ready": the parent times the writes)

    print("ready", flush=True)
    for path in argv[1:]:
        advance(path)
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv)
