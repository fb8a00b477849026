"""TimeSformer with an optional 3DTRL layer: model, data, training and evaluation."""
