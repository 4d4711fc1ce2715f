"""scikit-learn integration: frames and columns as estimator inputs, incremental fitting."""
