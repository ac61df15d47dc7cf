"""sketchgen: train, sample and evaluate generative models of Quick, Draw! drawings."""
