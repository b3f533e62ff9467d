# tests/local.mk - every test, run by make check.  Fragments per area.
include tests/unit/local.mk
include tests/unit/proto.mk
include tests/unit/patterns.mk
include tests/fuzz/local.mk
include tests/integration/local.mk

TESTS += tests/embed_example.sh
EXTRA_DIST += tests/embed_example.sh
