"""JAX integration: columns as JAX arrays through DLPack (:meth:`relay_ml.Column.to_jax`)."""
