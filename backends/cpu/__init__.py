"""The cpu backend: emulates every format's rounding on the CPU (the default, always available)."""
