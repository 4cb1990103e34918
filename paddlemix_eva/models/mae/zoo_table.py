"""Zoo entries of this family (registered when the zoo is first listed)."""
from ...zoo import ZooEntry, register  # noqa: F401

ENTRIES = []

for _entry in ENTRIES:
    register(_entry)
