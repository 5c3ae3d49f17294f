"""rnnpose: a reproducible companion to RMPP, "Unifying Part Detection and Association for
Multi-person Pose Estimation" — a recurrent decoder that emits one person per iteration on top of
an Associative-Embedding stacked hourglass, and the AE baseline it is compared with."""

__version__ = "0.1.0"
