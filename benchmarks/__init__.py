"""The benchmark suite of issue 5: big inputs, the reference script, the runner (see README.md)."""
