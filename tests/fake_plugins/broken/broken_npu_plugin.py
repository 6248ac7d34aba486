"""A vendor plugin whose import fails, as when its native library is missing."""

raise ImportError("libbrokennpu.so: cannot open shared object file")
