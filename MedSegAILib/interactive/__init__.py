"""Interactive seeded segmentation: a session that updates after every stroke."""
