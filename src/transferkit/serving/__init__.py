"""Serving trained models: runtimes behind one `Predictor` interface, and the HTTP server.

The batching defaults live here, importable without FastAPI, so that the command line shows
them without loading the server.
"""

MAX_BATCH = 32  # the most inputs in one model call
MAX_WAIT_MS = 5.0  # how long a batch waits for more requests
