"""A segmentation run as the Slicer panel (or any front end) starts it: one settings object,
the packages it needs, and its life cycle in a background process."""
