# tests/fuzz rules (empty so far)
