# tests/unit/proto.mk - protocol library unit tests (empty so far)
