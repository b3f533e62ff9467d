# tests/integration rules (empty so far)
