"""Serving trained models: runtimes behind one `Predictor` interface, and the HTTP server."""
