"""Acme NPU support for mpx (a template: copy it, rename the EP and its options)."""
