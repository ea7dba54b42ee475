"""The page below the browser: core, service, figures, views, export and callbacks called directly or over HTTP."""
