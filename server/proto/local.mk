# server/proto rules (empty so far)
