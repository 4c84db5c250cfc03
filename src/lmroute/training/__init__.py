"""Training: one readable loop per trainable router, and `train_router` for any of them."""
