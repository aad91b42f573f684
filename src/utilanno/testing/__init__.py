"""The tiny world and tiny models: the workflow and its tests without downloads or a model hub."""
