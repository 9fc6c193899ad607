"""Lower precisions at export: the fp16 / int8 artefacts written beside the float32 graphs
(``artefacts.py``), the real photographs that calibrate and judge them (``calib.py``), the gate
that judges a plan by its final maps (``gate.py``) and ``--precision auto``, which keeps what
passes and records the fastest plan (``auto.py``)."""
