"""Importable test helpers (``tests`` is on pytest's ``pythonpath``): ``helpers.audio`` (real
clips, ffmpeg), ``helpers.tagfiles`` (real files in every taggable format, with tags),
``helpers.tag_kill_child`` (the process test_tag_kill.py kills mid-write), ``helpers.library``
(a small real library with the user's own tag on its MP3)."""
