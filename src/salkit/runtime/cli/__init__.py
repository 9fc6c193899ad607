"""``sal-runtime``'s command line: the click group (``main.py``), one module per sub-command
(``predict``, ``refine``, ``bench``, ``eval``; ``serve`` lives with the server) and the pieces
predict and refine share (``common.py``)."""
