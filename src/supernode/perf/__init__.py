"""Cost primitives shared by the training and inference models (compute, memory, collectives)."""
