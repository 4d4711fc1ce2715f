"""PyTorch integration: datasets and a loader over relay frames.

Columns already reach torch without copying through :meth:`relay_ml.Column.to_tensor`
(DLPack). Datasets and the Rust-gathered loader live here.
"""
