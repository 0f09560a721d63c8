"""Atlas family: multi-atlas registration, label transfer and label fusion (no torch)."""
