# bench rules (empty so far)
