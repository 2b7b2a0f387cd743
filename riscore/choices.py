"""The allowed values of model switches that suites expose: the model validates them when it is built, a suite
when it is read, and suites must not import the model side (torch) to do so."""

from __future__ import annotations

ATTNPOOLS = ("clip", "etris")  # ResNet head: pretrained CLIP's attention pool, or ETRIS's variant of it
GATES = ("linear", "attention")  # decoder neck gate: a Linear of the sentence, or ETRIS's one-token attention
