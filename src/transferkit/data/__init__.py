"""Reading user data: images and text tables."""
