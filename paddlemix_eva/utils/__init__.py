"""Infrastructure: weight files (safe loading, atomic writes), the weight hub, errors, console output, CPU runtime
settings, packaged resources."""
