"""The built-in backends (installed as mpx.backends): cpu emulation, cuda and onnxrt."""
