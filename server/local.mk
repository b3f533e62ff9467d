# server rules (empty so far)
