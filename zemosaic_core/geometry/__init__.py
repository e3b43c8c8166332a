"""Where things land on the sky: the output canvas and each input's box on it."""
