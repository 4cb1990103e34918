"""What a trained model is used for: inference, export and deployment, evaluation, zero-shot classification, FLOP
counts, MAE reconstruction pictures."""
