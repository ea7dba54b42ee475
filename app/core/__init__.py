"""The page's state and options, free of Dash: options, the analysis shown, URL state, folding."""
