"""The single-example dashboard: ids, help, layout and callbacks (thin: they call the views)."""
