"""Why did the model say that? Heat maps for images (`transferkit.explain.images`: class
activation maps on the backbone's last feature map) and word attributions for text
(`transferkit.explain.text`), behind `Classifier.explain` and `transferkit explain`."""
