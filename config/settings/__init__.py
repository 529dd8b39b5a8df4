"""Settings package: ``base`` is the one settings module; ``test`` only changes speed knobs."""
