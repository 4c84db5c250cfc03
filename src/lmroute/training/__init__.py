"""Training: the solvers of the trainable routers (arrays and typed parameters in, learned weights
out); they never import :mod:`lmroute.routers`, whose ``fit`` calls them."""
